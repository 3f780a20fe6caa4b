"""A griffe extension for certun's documentation build (``mkdocs.yml`` loads it).

certun's docstrings are Google style with a few reStructuredText constructs that read well
in a terminal: ``.. math::`` blocks, ``:math:`...``` and cross-reference roles
(``:func:``, ``:class:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``, ``:exc:``). This
extension rewrites them into what mkdocstrings renders: ``$$ ... $$`` blocks and ``$...$``
for MathJax (via ``pymdownx.arithmatex``), and *optional* autorefs links for the roles. A
role's target is resolved by importing it from the docstring's module (or class) and
taking the object's canonical ``module.qualname``; an optional link that does not resolve
renders as plain code instead of failing the strict build, so a reference to a private or
undocumented object degrades to text. ``Example::`` literal-block markers become ``:``.
Exported module constants (``__all__``) get their ``#:`` comment as docstring, so they are
listed with their values. The source files are never changed.
"""

from __future__ import annotations

import html
import inspect
import io
import pkgutil
import re
import sys
import tokenize
from pathlib import Path
from typing import Any

import griffe

# Names resolve in this checkout (as griffe's ``paths: [.]`` does), installed or not.
_ROOT = str(Path(__file__).resolve().parents[1])

_ROLE = re.compile(r":(func|class|meth|mod|data|attr|exc|obj|const):`([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*(.*)$")
_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Keyword Args|Other Parameters):\s*$")
_MULTI = re.compile(r"^(\s+)(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+)(\s*\([^)]*\))?:(\s.*|)$")


def _split_grouped_args(lines: list[str]) -> list[str]:
    """``a, b: text`` in an Args section becomes one entry per name (griffe wants one)."""
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if _SECTION.match(line):
            section_indent = indent
            out.append(line)
            i += 1
            continue
        if section_indent is not None and line.strip() and indent <= section_indent:
            section_indent = None
        m = _MULTI.match(line) if section_indent is not None else None
        if m is None:
            out.append(line)
            i += 1
            continue
        item_indent = len(m.group(1))
        block = [m.group(4)]
        i += 1
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > item_indent):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        for name in re.split(r"\s*,\s*", m.group(2)):
            out.append(f"{m.group(1)}{name}{m.group(3) or ''}:{block[0]}")
            out.extend(block[1:])
    return out


def _import_path(path: str) -> Any:
    """The object at dotted ``path`` (``pkgutil.resolve_name``: modules, then attributes)."""
    if _ROOT not in sys.path:  # at call time: mkdocs restores sys.path after loading hooks
        sys.path.insert(0, _ROOT)
    return pkgutil.resolve_name(path)


def _canonical(obj: Any, fallback: str) -> str:
    if inspect.ismodule(obj):
        return obj.__name__
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(mod, str) and isinstance(qual, str) and mod.startswith("certun"):
        return f"{mod}.{qual}"
    return fallback


def _resolve(target: str, module: str, scope: str | None) -> str | None:
    """Canonical dotted path of ``target`` seen from ``module`` (and class ``scope``)."""
    candidates = [target] if target.startswith("certun") else []
    if scope:
        candidates.append(f"{scope}.{target}")
    candidates += [f"{module}.{target}", f"certun.{target}"]
    for path in candidates:
        try:
            return _canonical(_import_path(path), path)
        except (ImportError, AttributeError):
            continue
    return None


def _link(kind: str, text: str, module: str, scope: str | None) -> str:
    text = text.strip()
    m = re.fullmatch(r"(.*?)\s*<([^>]+)>", text)
    if m:
        title, target = m.group(1), m.group(2)
    else:
        target = text.lstrip("~").rstrip("()")
        title = target.rsplit(".", 1)[-1] if text.startswith("~") else target
        if kind in ("func", "meth"):
            title += "()"
    path = _resolve(target, module, scope)
    code = f"<code>{html.escape(title)}</code>"
    if path is None or any(p.startswith("_") for p in path.split(".")):
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def convert(text: str, module: str, scope: str | None = None) -> str:
    """Rewrite the reStructuredText constructs of one docstring into Markdown."""
    out: list[str] = []
    lines = _split_grouped_args(text.splitlines())
    i = 0
    while i < len(lines):
        m = _MATH_DIRECTIVE.match(lines[i])
        if m:
            indent, first = m.group(1), m.group(2)
            body = [first] if first.strip() else []
            i += 1
            while i < len(lines) and (not lines[i].strip() or
                                      len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            out += [indent + "$$"] + [indent + b.strip() for b in body if b.strip()]
            out += [indent + "$$", ""]
            continue
        line = lines[i]
        if line.rstrip().endswith("::") and not line.strip().startswith(".."):
            line = line.rstrip()[:-1]
        out.append(line)
        i += 1
    text = "\n".join(out)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1).strip()}$", text)
    return _ROLE.sub(lambda m: _link(m.group(1), m.group(2), module, scope), text)


def constant_comment(lines: list[str], lineno: int) -> str | None:
    """The documentation of the constant assigned on line ``lineno`` (1-based) of ``lines``.

    Sphinx's convention: the ``#:`` comment lines right above the assignment, else a
    trailing ``# comment`` on its first line; ``None`` when there is neither.
    """
    block: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        block.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    if block:
        return " ".join(b for b in block if b)
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(lines[lineno - 1]).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    comments = [t.string.lstrip("#").strip() for t in toks if t.type == tokenize.COMMENT]
    return comments[-1] if comments and comments[-1] else None


def _document_constants(module: griffe.Module) -> None:
    """Give each exported module constant without a docstring its comment as docstring.

    Python keeps no docstring for data, so an exported constant is documented by a ``#:``
    comment (or a trailing comment); one with neither is still listed, with its value.
    """
    exports = set(module.exports or ())
    if not exports or module.filepath is None or isinstance(module.filepath, list):
        return
    lines: list[str] | None = None
    for name in exports:
        attr = module.members.get(name)
        if attr is None or attr.is_alias or not attr.is_attribute or attr.docstring is not None:
            continue
        if lines is None:
            lines = Path(module.filepath).read_text(encoding="utf-8").splitlines()
        text = constant_comment(lines, attr.lineno) if attr.lineno else None
        attr.docstring = griffe.Docstring(
            text or f"Exported by `{module.path}`; its value is shown above.", parent=attr)


class RstToMarkdown(griffe.Extension):
    """Convert every docstring of the loaded package once it is fully loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:  # noqa: D102
        seen: set[str] = set()

        def walk(obj: griffe.Object) -> None:
            if obj.path in seen:
                return
            seen.add(obj.path)
            if obj.is_module:
                _document_constants(obj)
            if obj.docstring is not None:
                scope = obj.path if obj.is_class else (
                    obj.parent.path if obj.parent is not None and obj.parent.is_class else None)
                obj.docstring.value = convert(obj.docstring.value, obj.module.path, scope)
            for member in obj.members.values():
                if not member.is_alias:
                    walk(member)

        walk(pkg)
