"""The documentation stays true to the code.

* Every public symbol has a docstring (``tools/check_docstrings.py``; always runs), and the
  checker itself catches what it claims to catch (a synthetic package with gaps).
* Every API page names modules that exist; together they cover every public module and every
  name of every ``__all__``.
* The bound map (``docs/bounds.md``): every row has a bound, a paper, a proof that exists, a
  function that imports and a test that exists; every proof and every exported bound function
  is in it.
* ``mkdocs build --strict`` succeeds and the built reference has an entry for every exported
  name (only where the ``docs`` extra is installed; CI builds and checks the site in
  ``.ci/run`` as well).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PROOFS = ROOT / "proofs"


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def checker():
    """``tools/check_docstrings.py`` as a module."""
    return _load_tool("check_docstrings")


def test_every_public_symbol_has_a_docstring(checker):
    """The whole package passes the checker, which reaches modules, re-exports and methods."""
    checked, missing = checker.check("certun")
    assert not missing, "public symbols without a docstring:\n  " + "\n  ".join(missing)
    # the walk reaches the whole package: modules, re-exports, classes and their methods
    assert len(checked) > 300
    for name in ("certun.primitives.lissa_solver", "certun.Certificate.summary",
                 "certun.ledger.Ledger.forget", "certun.unlearners.GuoUnlearner.what_if",
                 "certun.certified_removal", "certun.enable_x64", "certun.cli"):
        assert name in checked


def test_docstring_checker_catches_what_it_claims(checker, tmp_path, monkeypatch, capsys):
    """A synthetic package with gaps: each gap is reported, nothing private, exit status 1."""
    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        """A package."""
        from fakepkg._private import hidden_but_exported as hidden_but_exported
        from fakepkg import mod as mod
    '''))
    (pkg / "_private.py").write_text(textwrap.dedent('''
        def hidden_but_exported():
            pass

        def never_exported():
            pass
    '''))
    (pkg / "mod.py").write_text(textwrap.dedent('''
        """A module."""
        import dataclasses
        from typing import Any, NamedTuple

        def documented():
            """Yes."""

        def undocumented():
            pass

        def _private():
            pass

        class Point(NamedTuple):
            x: float

        @dataclasses.dataclass
        class Config:
            a: int = 1

        class Good:
            """A class."""

            def method(self):
                pass

            @property
            def prop(self):
                return 1

            def documented(self):
                """Yes."""

            def _hidden(self):
                pass

        CONSTANT = 3
    '''))
    (pkg / "sub" / "__init__.py").write_text('__all__ = ["listed"]\n\n'
                                             'def listed():\n    pass\n\n'
                                             'def unlisted():\n    pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    checked, missing = checker.check("fakepkg")
    assert set(missing) == {
        "fakepkg.hidden_but_exported", "fakepkg.mod.undocumented", "fakepkg.mod.Point",
        "fakepkg.mod.Config", "fakepkg.mod.Good.method", "fakepkg.mod.Good.prop",
        "fakepkg.sub", "fakepkg.sub.listed"}
    assert "fakepkg.mod.documented" in checked and "fakepkg.mod.Good.documented" in checked
    assert not any("_private" in n or "never_exported" in n or "unlisted" in n or "Any" in n
                   for n in checked)
    # the command line fails (exit 1) and lists what is missing
    assert checker.main(["--package", "fakepkg"]) == 1
    assert "fakepkg.mod.undocumented" in capsys.readouterr().err
    for m in [m for m in sys.modules if m == "fakepkg" or m.startswith("fakepkg.")]:
        del sys.modules[m]


def _api_modules() -> dict[str, list[str]]:
    pages = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        pages[page.name] = re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.M)
    return pages


def test_api_pages_name_existing_modules_and_cover_the_package(checker):
    """Each API page renders modules that import; every public module is on a page in the nav."""
    pages = _api_modules()
    required = {"primitives", "accounting", "models", "bounds", "unlearners", "nn", "audits",
                "release", "ledger", "data", "core"}
    assert required <= {p.removesuffix(".md") for p in pages}
    rendered = set()
    for page, mods in pages.items():
        assert mods, f"docs/api/{page} renders nothing"
        for m in mods:
            importlib.import_module(m)  # raises if the page names a module that does not exist
        rendered |= set(mods)
    missing = set(checker.public_modules("certun")) - rendered
    assert not missing, f"public modules on no API page: {sorted(missing)}"
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in pages:
        assert f"api/{page}" in nav, f"docs/api/{page} is not in mkdocs.yml's nav"


BOUND_MAP = DOCS / "bounds.md"

#: Exported functions of the bound modules that compute no bound (helpers, defaults).
NOT_BOUNDS = {"certun.accounting.langevin.default_orders", "certun.release.targets"}


def _rendered_modules() -> set[str]:
    """Modules an API page renders with their members (not ``members: false``)."""
    out = set()
    for page in sorted((DOCS / "api").glob("*.md")):
        blocks = re.split(r"^(?=::: )", page.read_text(), flags=re.M)
        for block in blocks:
            m = re.match(r"::: ([\w.]+)", block)
            if m and "members: false" not in block:
                out.add(m.group(1))
    return out


def test_every_exported_name_is_on_an_api_page(checker):
    """Each name in an ``__all__`` is defined in a module an API page renders with members."""
    rendered = _rendered_modules()
    exported = checker.exported_symbols("certun")
    assert len(exported) > 300 and "certun.certified_removal" in exported
    absent = []
    for name, path in exported.items():
        owner = path if path in rendered else path.rsplit(".", 1)[0]
        while owner not in rendered and "." in owner:  # methods: class -> module
            owner = owner.rsplit(".", 1)[0]
        if owner not in rendered and path not in rendered:
            absent.append(f"{name} ({path})")
    assert not absent, f"exported names on no API page: {absent}"


def test_site_check_reports_missing_entries(checker, tmp_path):
    """``missing_from_site`` lists every name a site lacks and nothing when all are present."""
    exported = checker.exported_symbols("certun")
    (tmp_path / "empty").mkdir()
    assert len(checker.missing_from_site(tmp_path / "empty")) == len(exported)
    full = tmp_path / "full"
    full.mkdir()
    ids = sorted(set(exported.values()))
    (full / "index.html").write_text("".join(f'<h2 id="{i}">x</h2>' for i in ids[1:]))
    assert [m.split(" ")[0] for m in checker.missing_from_site(full)] == sorted(
        n for n, p in exported.items() if p == ids[0])
    (full / "first.html").write_text(f'<h2 id="{ids[0]}">x</h2>')
    assert checker.missing_from_site(full) == []


def _bound_map_rows() -> list[list[str]]:
    rows = []
    for line in BOUND_MAP.read_text().splitlines():
        if line.startswith("| ") and "](proofs/" in line:
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_bound_map_rows_are_complete_and_link_existing_proofs():
    """Every row: a bound, a paper, a proof that exists, a function and a test; every proof."""
    rows = _bound_map_rows()
    assert len(rows) >= 40
    linked = set()
    for row in rows:
        assert len(row) == 5 and all(row), f"incomplete row: {row}"
        proofs = re.findall(r"\]\(proofs/([\w.-]+\.md)\)", row[2])
        assert proofs, f"row without a proof link: {row[0]}"
        for name in proofs:
            assert (PROOFS / name).is_file(), f"docs/bounds.md links to missing proofs/{name}"
        linked |= set(proofs)
        assert re.search(r"\]\[certun\.[\w.]+\]", row[3]), f"row names no function: {row[0]}"
        assert "::test_" in row[4], f"row names no test: {row[0]}"
    on_disk = {p.name for p in PROOFS.glob("*.md")} - {"README.md"}
    assert on_disk <= linked, f"proofs not in the bound map: {sorted(on_disk - linked)}"


def test_bound_map_functions_exist_and_cover_every_bound():
    """Each function the map links to imports; every exported bound function is in the map."""
    named = set(re.findall(r"\]\[(certun\.[\w.]+)\]", BOUND_MAP.read_text()))
    for path in sorted(named):
        pkgutil.resolve_name(path)  # raises if the map names something that does not exist
    missing = []
    for modname in ("certun.bounds.guo", "certun.bounds.sekhari", "certun.bounds.descent_to_delete",
                    "certun.bounds.zhang", "certun.accounting.gaussian",
                    "certun.accounting.composition", "certun.accounting.langevin",
                    "certun.release", "certun.scale"):
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            path = f"{modname}.{name}"
            if inspect.isfunction(obj) and path not in named and path not in NOT_BOUNDS:
                missing.append(path)
    assert not missing, f"bound functions not in docs/bounds.md: {missing}"


def test_bound_map_tests_exist():
    """Every ``file::test`` the map cites is a test function in that file."""
    cited = set()
    for row in _bound_map_rows():
        cited |= set(re.findall(r"`([\w/]+\.py)::(test_\w+)`", row[4]))
    assert len(cited) >= 60
    absent = [f"{f}::{t}" for f, t in sorted(cited)
              if not re.search(rf"^def {t}\(", (ROOT / "tests" / f).read_text(), flags=re.M)
              if (ROOT / "tests" / f).is_file()]
    absent += [f for f, _ in cited if not (ROOT / "tests" / f).is_file()]
    assert not absent, f"docs/bounds.md cites tests that do not exist: {absent}"


def test_docs_link_to_existing_repository_pages():
    """Links to proofs and experiments resolve; every experiment is on the reproductions page."""
    experiments = {p.parent.name for p in (ROOT / "experiments").glob("*/README.md")}
    repro = (DOCS / "reproductions.md").read_text()
    for name in experiments:
        assert f"(experiments/{name}.md)" in repro, f"experiments/{name} is not on the page"
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(((?:proofs|experiments)/[\w.-]+)\.md(?:#[\w-]*)?\)",
                                 page.read_text()):
            kind, name = target.split("/")
            ok = name == "index" or (
                (PROOFS / f"{name}.md").is_file() if kind == "proofs" else name in experiments)
            assert ok, f"docs/{page.name} links to {target}.md, which does not exist"


def test_changelog_has_an_unreleased_section():
    """CHANGELOG.md is in Keep a Changelog form."""
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "## [Unreleased]" in text


@pytest.mark.slow  # CI builds the site itself (.ci/run: mkdocs build --strict, check_site)
def test_mkdocs_build_strict(checker, tmp_path):
    """The site builds with no warning; links, math and every exported name are in it."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings-python missing")
    pytest.importorskip("material", reason="mkdocs-material missing")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    site = tmp_path / "site"
    bounds = (site / "bounds" / "index.html").read_text()
    assert 'href="../proofs/loss_scales/"' in bounds  # proof links work inside the site
    assert 'href="../api/bounds/#certun.bounds.guo.data_dependent_bound"' in bounds
    api = (site / "api" / "primitives" / "index.html").read_text()
    assert 'id="certun.primitives.solvers.lissa_solver"' in api
    # docstring math is rendered to MathML at build time; nothing loads from the network
    assert "<math" in api and 'class="arithmatex"' not in api
    site_check = _load_tool("check_site")
    assert site_check.external_assets(site) == []
    assert site_check.unrendered_tex(site) == []
    assert (site / "bibliography" / "index.html").is_file()
    # the executed tutorials, with their figures, are pages of the site
    for page in sorted((ROOT / "docs" / "tutorials").glob("0*_*.md")):
        html = (site / "tutorials" / page.stem / "index.html").read_text()
        figures = re.findall(r'<img[^>]*src="\.\./img/([\w.-]+\.png)"', html)
        assert figures and 'class="certun-output"' in html, page.stem
        assert all((site / "tutorials" / "img" / f).is_file() for f in figures)
    assert (site / "proofs" / "index.html").is_file()
    assert (site / "changelog" / "index.html").is_file()
    # every exported name, constants included, has an entry in the API reference
    assert checker.missing_from_site(site) == []
    guo = (site / "api" / "unlearners" / "index.html").read_text()
    assert 'id="certun.unlearners.guo.MECHANISM"' in guo


def test_site_check_catches_external_assets_and_raw_tex(tmp_path):
    """``tools/check_site.py`` flags a CDN script, a remote font and a formula left as TeX."""
    site_check = _load_tool("check_site")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text(
        '<script src="https://cdn.example/mathjax.js"></script>'
        '<link rel="canonical" href="https://example.org/a/">'
        "<p>fine <code>\\lambda</code> <math><mi>x</mi></math> raw \\(\\lambda x\\)</p>")
    (tmp_path / "s.css").write_text("@font-face{src:url(https://fonts.example/f.woff2)}")
    (tmp_path / "ok.html").write_text('<script src="assets/x.js"></script><p>$5 and 3 $</p>')
    ext = site_check.external_assets(tmp_path)
    assert len(ext) == 2 and "mathjax.js" in ext[0] and "f.woff2" in ext[1]
    raw = site_check.unrendered_tex(tmp_path)
    assert len(raw) == 2 and all(r.startswith("a/index.html") for r in raw)
    assert site_check.main([str(tmp_path)]) == 1
