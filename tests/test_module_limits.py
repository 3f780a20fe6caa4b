"""Size and shape limits of the convex core's modules (checked on their syntax trees).

The modules of the certified convex core stay readable: no module over 600 lines, no factory
(a function defining inner functions) over 350 lines counting them, no function body over 120
lines not counting nested definitions, and no hidden mutable state (``global``/``nonlocal``,
or a list/dict/set made in a factory and read by its inner functions).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = (
    "certun/unlearners/guo.py",
    "certun/unlearners/_guo_steps.py",
    "certun/unlearners/_guo_host.py",
    "certun/unlearners/_guo_certs.py",
    "certun/unlearners/_guo_sequence.py",
    "certun/unlearners/_guo_request.py",
    "certun/unlearners/sekhari.py",
    "certun/primitives/curvature_cache.py",
    "certun/primitives/row_blocks.py",
    "certun/primitives/spectral.py",
    "certun/models/glm.py",
    "certun/bounds/guo_accountant.py",
    "certun/bounds/guo.py",
)
FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _span(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1


def _nested(fn: ast.AST) -> list:
    return [n for n in ast.walk(fn) if n is not fn and isinstance(n, FUNCS)]


def _own_body_lines(fn: ast.FunctionDef) -> int:
    """Lines of ``fn``'s body (docstring included) minus those of its nested definitions."""
    body = fn.body[-1].end_lineno - fn.body[0].lineno + 1
    outer = [n for n in _nested(fn) if not any(n is not o and n.lineno >= o.lineno
                                                and n.end_lineno <= o.end_lineno
                                                for o in _nested(fn))]
    return body - sum(_span(n) for n in outer)


def _functions(tree: ast.AST) -> list:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _check(source: str) -> list[str]:
    tree = ast.parse(source)
    errs = []
    if len(source.splitlines()) > 600:
        errs.append(f"module has {len(source.splitlines())} lines > 600")
    for fn in _functions(tree):
        inner = [n for n in _nested(fn) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if inner and _span(fn) > 350:
            errs.append(f"factory {fn.name} spans {_span(fn)} lines > 350")
        if _own_body_lines(fn) > 120:
            errs.append(f"function {fn.name} has {_own_body_lines(fn)} body lines > 120")
        for n in ast.walk(fn):
            if isinstance(n, (ast.Global, ast.Nonlocal)):
                errs.append(f"{fn.name}: {type(n).__name__.lower()} state")
        if inner:
            made = {t.id for s in fn.body if isinstance(s, (ast.Assign, ast.AnnAssign))
                    and isinstance(s.value, (ast.List, ast.Dict, ast.Set))
                    for t in (s.targets if isinstance(s, ast.Assign) else [s.target])
                    if isinstance(t, ast.Name)}
            used = {n.id for f in inner for n in ast.walk(f) if isinstance(n, ast.Name)}
            if made & used:
                errs.append(f"factory {fn.name} closes over mutable {sorted(made & used)}")
    return errs


@pytest.mark.parametrize("path", MODULES)
def test_module_limits(path):
    p = ROOT / path
    if not p.exists():
        pytest.skip(f"{path} not present")
    assert _check(p.read_text()) == []


def test_the_checker_can_fail():
    big = "def f():\n" + "    x = 1\n" * 121
    factory = ("def g():\n    cache = []\n    def h():\n        return cache\n"
               + "    y = 1\n" * 350 + "    return h\n")
    assert any("body lines" in e for e in _check(big))
    errs = _check(factory)
    assert any("factory g spans" in e for e in errs)
    assert any("mutable ['cache']" in e for e in errs)
    assert _check("def k():\n    global z\n") == ["k: global state"]
