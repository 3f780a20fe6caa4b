"""mkdocs hooks for certun's documentation (``hooks:`` in ``mkdocs.yml``).

The repository's Markdown stays the single source: at build time this hook adds

* ``proofs/index.md`` (``proofs/README.md``: the index and the conventions every proof
  shares) and ``proofs/<name>.md`` -- every derivation in ``proofs/``;
* ``experiments/index.md`` and ``experiments/<name>.md`` -- the experiments' READMEs;
* ``benchmarks.md`` (``benchmarks/README.md``) and ``changelog.md`` (``CHANGELOG.md``);

and expands the ``proofs/`` and ``experiments/`` placeholders of the navigation into one
entry per file. The bound map (``docs/bounds.md``: bound, paper and equation, proof,
function, test) is written by hand and checked by ``tests/test_docs.py``. Nothing here
touches the network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

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
        out.append(text[pos:m.start()].rstrip(" \t"))
        out.append(f"\n\n{indent}$$\n{indent}{m.group(1).strip()}\n{indent}$$\n\n{indent}")
        pos = m.end()
    out.append(text[pos:])
    return re.sub(r"\n{3,}", "\n\n", "".join(out))


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
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

