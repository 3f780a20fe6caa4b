"""Every citation in the repository resolves inside the repository.

* No file cites the maintainers' private notes file (the name is built below so this test
  does not cite it itself) or a path outside the repository.
* ``docs/bibliography.md §N`` names a source note, ``erratum N`` / ``errata N and M`` after
  such a citation names an erratum that the bibliography holds.
* Every ``proofs/<name>.md`` and ``docs/<name>.md`` mentioned anywhere exists.
* Every "Author et al. YEAR" / "Author & Author YEAR" cited in the package's docstrings and in
  ``proofs/`` is a row of the bibliography's reference table.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "docs" / "bibliography.md"
PRIVATE_NOTES = "REFERENCES" + ".md"
# Being rewritten on another branch (the Guo cache/accountant split), which removes their
# citations of the private notes; drop these two entries once it has merged.
PENDING: set[str] = set()
SELF = "tests/test_citations.py"  # holds deliberately dangling examples
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".txt", ".cfg", ".ipynb", ".json", ""}


def _repo_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
        names = out.split()
    except (OSError, subprocess.CalledProcessError):  # an unpacked sdist: walk the tree
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                 and not any(part.startswith(".") or part in {"build", "site"}
                             for part in p.relative_to(ROOT).parts)]
    return [ROOT / n for n in names
            if (ROOT / n).is_file() and Path(n).suffix in TEXT_SUFFIXES]


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    out = {}
    for p in _repo_files():
        try:
            out[str(p.relative_to(ROOT))] = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return out


@pytest.fixture(scope="module")
def bib() -> str:
    return BIB.read_text(encoding="utf-8")


def test_no_file_cites_the_private_notes_or_paths_outside_the_repo(texts):
    bad = [f"{name}:{i}" for name, text in texts.items() if name not in PENDING | {SELF}
           for i, line in enumerate(text.splitlines(), 1)
           if PRIVATE_NOTES in line or "/work/shared" in line]
    assert not bad, f"citations of documents users do not have: {bad}"


def test_the_checks_see_the_repository(texts):
    # the walk reaches code, proofs, docs and experiments; the pattern would catch a citation
    for name in ("certun/audits/stats.py", "proofs/README.md", "docs/bounds.md",
                 "experiments/guo2020/README.md"):
        assert name in texts
    assert re.search(re.escape(PRIVATE_NOTES), f"see {PRIVATE_NOTES} section 2")


_NOTE = re.compile(r"bibliography(?:\.md)?\]?\(?[\w./#-]*\)?,?\s+§\s*(\d+(?:\.\d+)?)")
_ERRATA = re.compile(r"bibliography(?:\.md)?\]?\(?[\w./#-]*\)?,?\s+errat(?:um|a)(?: item)?s?"
                     r"\s+((?:\d+(?:,\s*|\s+and\s+|\s*-\s*)?)+)")


def _notes(bib: str) -> set[str]:
    return set(re.findall(r"^###\s+§(\d+(?:\.\d+)?)\s", bib, re.M))


def _errata(bib: str) -> set[int]:
    return {int(n) for n in re.findall(r"^\*\*Erratum (\d+)\*\*", bib, re.M)}


def test_bibliography_notes_and_errata_cited_exist(texts, bib):
    notes, errata = _notes(bib), _errata(bib)
    assert errata == set(range(1, 13)) and {"2.8", "4.3", "17.5"} <= notes
    missing, seen = [], 0
    for name, text in texts.items():
        if name == SELF:
            continue
        flat = re.sub(r"\s+", " ", text)
        for m in _NOTE.finditer(flat):
            seen += 1
            if m.group(1) not in notes:
                missing.append(f"{name}: §{m.group(1)}")
        for m in _ERRATA.finditer(flat):
            for n in re.findall(r"\d+", m.group(1)):
                seen += 1
                if int(n) not in errata:
                    missing.append(f"{name}: erratum {n}")
    assert not missing, f"citations the bibliography does not hold: {missing}"
    assert seen > 80  # the repository cites the bibliography throughout


def test_the_resolver_rejects_a_dangling_note(bib):
    flat = "see docs/bibliography.md §99.9 and docs/bibliography.md errata 6 and 13"
    assert [m.group(1) for m in _NOTE.finditer(flat)] == ["99.9"]
    assert "99.9" not in _notes(bib)
    assert re.findall(r"\d+", _ERRATA.search(flat).group(1)) == ["6", "13"]
    assert 13 not in _errata(bib)


_PATH = re.compile(r"(?<![\w./-])((?:proofs|docs)/[\w-]+\.md)")


def test_every_cited_proof_or_docs_file_exists(texts):
    site_only = {"proofs/index.md": "proofs/README.md"}  # the hook's page for the README
    missing = sorted({f"{name}: {m}" for name, text in texts.items()
                      for m in _PATH.findall(text) if not (ROOT / site_only.get(m, m)).exists()})
    assert not missing, f"citations of files that do not exist: {missing}"


_AUTHOR = re.compile(r"\b([A-Z][a-zA-Z-]+(?: et al\.| & [A-Z][a-zA-Z-]+)),? \(?((?:19|20)\d\d)\b")


def test_every_cited_paper_is_in_the_bibliography(texts, bib):
    rows = [row for row in bib.split("## References", 1)[1].split("## Errata", 1)[0].splitlines()
            if row.startswith("| ") and row.count("|") >= 4]
    assert len(rows) > 30
    missing = set()
    for name, text in texts.items():
        if not (name.startswith(("certun/", "proofs/")) and name not in PENDING):
            continue
        for who, year in _AUTHOR.findall(text):
            if not any(who.split()[0] in row and year in row for row in rows):
                missing.add(f"{who} {year} ({name})")
    assert not missing, f"papers cited but not in docs/bibliography.md: {sorted(missing)}"
