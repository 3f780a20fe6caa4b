"""mkdocs hooks for certun's documentation (``hooks:`` in ``mkdocs.yml``).

The repository's Markdown stays the single source: at build time this hook adds

* ``proofs/index.md`` (``proofs/README.md``: the index and the conventions every proof
  shares) and ``proofs/<name>.md`` -- every derivation in ``proofs/``;
* ``experiments/index.md`` and ``experiments/<name>.md`` -- the experiments' READMEs;
* ``benchmarks.md`` (``benchmarks/README.md``) and ``changelog.md`` (``CHANGELOG.md``);

and expands the ``proofs/`` and ``experiments/`` placeholders of the navigation into one
entry per file. The bound map (``docs/bounds.md``: bound, paper and equation, proof,
function, test) is written by hand and checked by ``tests/test_docs.py``.

Math is rendered **at build time**: ``pymdownx.arithmatex`` (generic mode) marks every
formula, and :func:`render_math` turns each one into MathML with ``latex2mathml`` (pure
Python, MIT licence, in the ``docs`` extra). Browsers draw MathML natively, so the site needs
no script, style sheet or font from the network, and a formula the converter cannot handle
fails the build instead of showing raw TeX. Nothing here touches the network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

_ARITHMATEX = re.compile(
    r'<(span|div) class="arithmatex">\s*(\\\(|\\\[)(.*?)(\\\)|\\\])\s*</\1>', re.S)
_LOOSE_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
# a TeX control word left in the converter's output means it did not know the command
_LEFTOVER = re.compile(r">[^<]*\\[A-Za-z]+[^<]*<")


class MathError(ValueError):
    """A formula that ``latex2mathml`` cannot convert (the build stops on it)."""


def _normalise_tex(tex: str) -> str:
    """Rewrite the few TeX idioms ``latex2mathml`` lacks into equivalents it knows."""
    tex = re.sub(r"\\arg(?![A-Za-z])", r"\\operatorname{arg}", tex)
    # f''^{x}: primes followed by a superscript are one superscript in TeX
    tex = re.sub(r"('+)\^\{", lambda m: "^{" + r"\prime" * len(m.group(1)), tex)
    return re.sub(r"('+)\^(\\[A-Za-z]+|\w)",
                  lambda m: "^{" + r"\prime" * len(m.group(1)) + m.group(2) + "}", tex)


def tex_to_mathml(tex: str, display: bool) -> str:
    """One TeX formula as a MathML ``<math>`` element (``display="block"`` for display math)."""
    from latex2mathml.converter import convert

    tex = _normalise_tex(tex)
    try:
        out = convert(tex, display="block" if display else "inline")
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        raise MathError(f"cannot render {tex!r}: {exc}") from exc
    if _LEFTOVER.search(out):
        raise MathError(f"unknown TeX command left in {tex!r}: {out[:200]}")
    return out


def render_math(html: str, where: str = "") -> str:
    """Replace every arithmatex-marked formula in ``html`` by MathML (build-time rendering)."""
    import html as _html

    def one(m: re.Match[str]) -> str:
        display = m.group(1) == "div"
        tex = _html.unescape(m.group(3)).strip()
        try:
            mathml = tex_to_mathml(tex, display)
        except MathError as exc:
            raise MathError(f"{where}: {exc}") from exc
        cls = "certun-math certun-math--display" if display else "certun-math"
        tag = "div" if display else "span"
        return f'<{tag} class="{cls}">{mathml}</{tag}>'

    html = _ARITHMATEX.sub(one, html)
    # display math that arithmatex left in a paragraph (``$$...$$`` inside a list item):
    # render it as a display formula too, outside code
    parts = re.split(r"(<pre.*?</pre>|<code.*?</code>)", html, flags=re.S)
    for i in range(0, len(parts), 2):
        parts[i] = _LOOSE_DISPLAY.sub(
            lambda m: ('<span class="certun-math certun-math--display">'
                       + tex_to_mathml(_html.unescape(m.group(1)).strip(), True) + "</span>"),
            parts[i])
    return "".join(parts)

_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)


def display_math_blocks(text: str) -> str:
    """Put every ``$$...$$`` on lines of its own, as ``pymdownx.arithmatex`` needs.

    GitHub renders ``$$...$$`` in the middle of a paragraph; arithmatex only treats it as
    display math when it forms a block, so the formula is split out (same indentation).
    """
    out, pos = [], 0
    for m in _DISPLAY.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        if text[line_start:m.start()].lstrip().startswith("|"):
            continue  # leave table rows alone
        indent = re.match(r"[ \t]*", text[line_start:]).group(0)
        if 0 < len(indent) < 4 and "\t" not in indent:
            indent = "    "  # inside a list item: Python-Markdown nests blocks at 4 spaces
        out.append(text[pos:m.start()].rstrip(" \t"))
        out.append(f"\n\n{indent}$$\n{indent}{m.group(1).strip()}\n{indent}$$\n\n{indent}")
        pos = m.end()
    out.append(text[pos:])
    return re.sub(r"\n{3,}", "\n\n", "".join(out))


_PLAIN = {r"\lVert": "‖", r"\rVert": "‖", r"\le": "≤", r"\ge": "≥", r"\lambda": "λ",
          r"\varepsilon": "ε", r"\epsilon": "ε", r"\sigma": "σ", r"\gamma": "γ",
          r"\delta": "δ", r"\alpha": "α", r"\mu": "μ", r"\kappa": "κ", r"\sqrt": "√",
          r"\infty": "∞", r"\cdot": "·", "_2": "₂", "{": "", "}": ""}


def _plain_tex(tex: str) -> str:
    for k, v in _PLAIN.items():
        tex = tex.replace(k, v)
    return re.sub(r"\s+", " ", re.sub(r"\\([A-Za-z]+)", r"\1", tex)).strip()


def plain_title(text: str) -> str:
    """A heading as plain text for the navigation (which shows no math): TeX to Unicode."""
    return re.sub(r"\$([^$]+)\$", lambda m: _plain_tex(m.group(1)), text)


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return plain_title(line[2:].strip())
    return path.stem


def proof_files() -> list[Path]:
    """The derivations in ``proofs/`` (without its README)."""
    return sorted(p for p in (ROOT / "proofs").glob("*.md") if p.name != "README.md")


def experiment_dirs() -> list[Path]:
    """The experiment directories that hold a README."""
    return sorted(p.parent for p in (ROOT / "experiments").glob("*/README.md"))


def proofs_index() -> str:
    """``proofs/README.md`` (the proofs' index and shared conventions) as ``proofs/index.md``."""
    text = (ROOT / "proofs" / "README.md").read_text(encoding="utf-8")
    return text.replace("# certun proofs: index and conventions",
                        "# Proofs: index and conventions\n\nThis page is `proofs/README.md`. "
                        "The [bound map](../bounds.md) adds each bound's paper, equation and "
                        "test.",
                        1)


def _experiments_index() -> str:
    text = (ROOT / "experiments" / "README.md").read_text(encoding="utf-8")
    return re.sub(r"\]\((\w+)/README\.md\)", r"](\1.md)", text)


def on_config(config: Any, **kwargs: Any) -> Any:
    """Expand the ``proofs/`` and ``experiments/`` navigation placeholders."""
    def expand(items: list) -> list:
        out = []
        for item in items:
            if isinstance(item, dict):
                (k, v), = item.items()
                if v == "proofs/":
                    v = [{"Index and conventions": "proofs/index.md"}] + [
                        {_title(p): f"proofs/{p.name}"} for p in proof_files()]
                elif v == "experiments/":
                    v = [{"Overview": "experiments/index.md"}] + [
                        {d.name: f"experiments/{d.name}.md"} for d in experiment_dirs()]
                elif isinstance(v, list):
                    v = expand(v)
                out.append({k: v})
            else:
                out.append(item)
        return out

    config["nav"] = expand(config["nav"])
    return config


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Add the repository's Markdown (proofs, experiments, benchmarks, changelog)."""
    def add(uri: str, content: str) -> None:
        files.append(File.generated(config, uri, content=content))

    add("proofs/index.md", display_math_blocks(proofs_index()))
    for p in proof_files():
        add(f"proofs/{p.name}", display_math_blocks(p.read_text(encoding="utf-8")))
    add("experiments/index.md", _experiments_index())
    for d in experiment_dirs():
        add(f"experiments/{d.name}.md", (d / "README.md").read_text(encoding="utf-8"))
    add("benchmarks.md", (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8"))
    changelog = ROOT / "CHANGELOG.md"
    if changelog.exists():
        add("changelog.md", changelog.read_text(encoding="utf-8"))
    return files



def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """Render the page's math to MathML at build time (no script at view time).

    The table of contents shows headings as text, so their math becomes plain Unicode.
    """
    def walk(items: Any) -> None:
        for item in items:
            item.title = re.sub(r"\\\((.+?)\\\)", lambda m: _plain_tex(m.group(1)), item.title)
            walk(item.children)

    walk(page.toc)
    return render_math(html, where=page.file.src_uri)
