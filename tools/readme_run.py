"""Run the README's console examples and regenerate (or check) the output it shows.

``python tools/readme_run.py --write`` runs every command of every ```` ```console ````
block of ``README.md`` (lines starting with ``$ ``) with ``bash``, in order, in one fresh
temporary directory (so ``--out my-model`` and ``rows.txt`` land there), and writes each
command's output back under it; it also refreshes the test count in the *Tests* section
(``python3 -m pytest --collect-only``). ``--check`` runs the same and exits 1 with a diff
when the README differs from what the commands print now, after normalising what changes
from run to run: timings (``28.5 ms``, ``1.0 s``) and the temporary directory.

``tests/test_readme.py`` (slow tier) runs ``--check`` in a fresh virtual environment with
certun installed from the checkout, so every README example is what a new user sees.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_BLOCK = re.compile(r"```console\n(.*?)```", re.S)
_TIME = re.compile(r"\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\s?(?:ms|s|seconds|sec)\b")
_TESTS = re.compile(r"(<!-- tests -->)(.*?)(<!-- /tests -->)", re.S)


def normalise(text: str, workdir: str | None = None) -> str:
    """Output with timings and the temporary directory replaced by placeholders."""
    if workdir:
        text = text.replace(workdir, "<DIR>")
    text = _TIME.sub("<TIME>", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def commands(block: str) -> list[str]:
    """The ``$ `` command lines of a console block."""
    return [line[2:] for line in block.splitlines() if line.startswith("$ ")]


def run_blocks(text: str, env: dict[str, str], timeout: float = 900) -> tuple[str, str]:
    """Run every console block; return (README with fresh outputs, the temporary dir)."""
    workdir = tempfile.mkdtemp(prefix="certun-readme-")
    out_parts, pos = [], 0
    for m in _BLOCK.finditer(text):
        lines = []
        for cmd in commands(m.group(1)):
            proc = subprocess.run(["bash", "-c", cmd], cwd=workdir, env=env, text=True,
                                  capture_output=True, timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"README command failed ({proc.returncode}): {cmd}\n"
                                   f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            lines.append(f"$ {cmd}")
            shown = proc.stdout.rstrip("\n")
            if shown:
                lines.append(shown.replace(workdir + "/", "").replace(workdir, "."))
        out_parts += [text[pos:m.start(1)], "\n".join(lines) + "\n"]
        pos = m.end(1)
    out_parts.append(text[pos:])
    return "".join(out_parts), workdir


def test_count(python: str) -> str:
    """``N tests (M in the slow tier)`` from pytest's collection of the checkout."""
    def collected(*extra: str) -> int:
        proc = subprocess.run([python, "-m", "pytest", "--collect-only", "-q", "-p",
                               "no:cacheprovider", *extra], cwd=ROOT, text=True,
                              capture_output=True, timeout=900)
        m = re.search(r"(\d+)(?:/\d+)? tests? collected", proc.stdout)
        if not m:
            raise RuntimeError(f"pytest collection failed:\n{proc.stdout[-2000:]}")
        return int(m.group(1))

    default, slow = collected(), collected("-m", "slow")
    return f"{default} tests in the default suite and {slow} in the slow tier"


def main(argv: list[str] | None = None) -> int:
    """Refresh (``--write``) or verify (``--check``) the README's examples and counts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter whose environment runs the commands")
    ap.add_argument("--no-count", action="store_true", help="leave the test count alone")
    args = ap.parse_args(argv)
    env = dict(os.environ, CERTUN_PROGRESS="0", JAX_PLATFORMS="cpu")
    env["PATH"] = os.pathsep.join([str(Path(args.python).parent), env.get("PATH", "")])
    text = README.read_text(encoding="utf-8")
    fresh, workdir = run_blocks(text, env)
    if not args.no_count:
        count = test_count(args.python)
        fresh = _TESTS.sub(lambda m: m.group(1) + count + m.group(3), fresh)
    if args.write:
        README.write_text(fresh, encoding="utf-8")
        print(f"README.md refreshed ({len(_BLOCK.findall(text))} console blocks)")
        return 0
    old, new = normalise(text), normalise(fresh, workdir)
    if old == new:
        print("README.md matches what its commands print")
        return 0
    sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                               "README.md", "fresh run"))
    return 1


if __name__ == "__main__":
    sys.exit(main())
