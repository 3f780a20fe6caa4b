r"""Check a built documentation site works offline: ``python tools/check_site.py SITE_DIR``.

* no ``<script src>``, ``<link href>`` (style sheets, fonts, icons), ``<img src>`` or CSS
  ``url(...)`` / ``@import`` points outside the site (``http:``, ``https:`` or ``//``);
* no formula is left as raw TeX: math is rendered to MathML at build time
  (``tools/mkdocs_hooks.py``), so ``\(``, ``\[``, ``$$`` or a TeX control word such as
  ``\lambda`` in a page's text (outside code) means a formula was not rendered.

Exit status 1 with one line per problem; 0 when the site is clean. CI runs it after
``mkdocs build`` (``.ci/run``); ``tests/test_docs.py`` runs it on the site it builds.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_EXTERNAL = re.compile(r"^(?:https?:)?//", re.I)
_ASSET_ATTR = re.compile(
    r"<(script|link|img|iframe|source|audio|video)\b[^>]*?\s(src|href)\s*=\s*[\"']([^\"']+)[\"']",
    re.I | re.S)
_CSS_URL = re.compile(r"(?:url\(\s*[\"']?|@import\s+[\"'])([^\"')\s]+)", re.I)
_CODE = re.compile(r"<(script|style|code|pre|textarea)\b[^>]*>.*?</\1>", re.S | re.I)
_MATH = re.compile(r"<math\b.*?</math>", re.S)
_TAG = re.compile(r"<[^>]+>")
_RAW_TEX = re.compile(r"\\\(|\\\[|\$\$|\$\\[A-Za-z]|\\(?:frac|lambda|sigma|epsilon|lVert|rVert|"
                      r"sum|sqrt|mathrm|le|ge|nabla|top)\b")


def external_assets(site: Path) -> list[str]:
    """Every script, style sheet, font or image that the site loads from outside itself."""
    out = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        for tag, attr, url in _ASSET_ATTR.findall(text):
            if tag.lower() == "link" and not re.search(
                    r"rel=[\"'](?:stylesheet|preload|icon|shortcut icon|preconnect|modulepreload|"
                    r"manifest)", _link_tag(text, url), re.I):
                continue  # <link rel="canonical">/"alternate" are addresses, not assets
            if _EXTERNAL.match(url):
                out.append(f"{page.relative_to(site)}: <{tag} {attr}={url}>")
    for sheet in sorted(site.rglob("*.css")):
        for url in _CSS_URL.findall(sheet.read_text(encoding="utf-8", errors="replace")):
            if _EXTERNAL.match(url):
                out.append(f"{sheet.relative_to(site)}: url({url})")
    return out


def _link_tag(text: str, url: str) -> str:
    i = text.find(url)
    return text[text.rfind("<", 0, i):text.find(">", i) + 1]


def unrendered_tex(site: Path) -> list[str]:
    """Every place where a page's visible text still holds TeX source."""
    out = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        visible = _TAG.sub(" ", _MATH.sub(" ", _CODE.sub(" ", text)))
        for m in _RAW_TEX.finditer(visible):
            snippet = " ".join(visible[max(0, m.start() - 40):m.end() + 40].split())
            out.append(f"{page.relative_to(site)}: ...{snippet}...")
    return out


def main(argv: list[str] | None = None) -> int:
    """Report external assets and unrendered TeX in a built site; 1 if there is any."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python tools/check_site.py SITE_DIR", file=sys.stderr)
        return 2
    site = Path(args[0])
    problems = external_assets(site) + unrendered_tex(site)
    for p in problems:
        print(p)
    pages = len(list(site.rglob("*.html")))
    print(f"{pages} pages: {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems or pages == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
