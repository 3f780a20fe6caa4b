#!/usr/bin/env python3
"""Fail on a public certun symbol without a docstring.

Walks every public module of the ``certun`` package (no path component starting with
``_``), and in each one every public name: the names in ``__all__`` where the module
defines it, otherwise every name without a leading underscore whose object was defined in
certun (re-exports included; names imported from JAX, NumPy or ``typing`` are not
certun's to document). Functions and classes need a docstring of their own -- the
signature-only text that ``NamedTuple`` and ``dataclass`` generate does not count -- and
so does every public method, property, classmethod and staticmethod a certun class
defines. Data (constants, tuples) cannot carry a docstring at run time and are not
checked. Modules need a module docstring.

Usage::

    python tools/check_docstrings.py          # exit 1 and list what is missing
    python tools/check_docstrings.py --list   # also list every symbol checked
    python tools/check_docstrings.py --site build/site   # and every __all__ name is in the site

``tests/test_docs.py`` runs the same check in the default test suite, and ``.ci/run``
runs this script before building the documentation.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Members a class gets from Python's machinery, never documented by hand.
_SKIP_MEMBERS = frozenset({"count", "index"})  # tuple methods NamedTuples inherit


def public_modules(package: str = "certun") -> list[str]:
    """Names of ``package`` and its submodules with no ``_``-prefixed component."""
    pkg = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(names)


def _is_certun(obj: object, package: str) -> bool:
    mod = getattr(obj, "__module__", None)
    return isinstance(mod, str) and (mod == package or mod.startswith(package + "."))


def _own_doc(obj: object) -> str | None:
    """The docstring ``obj`` itself carries (not one inherited or auto-generated)."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        if not isinstance(doc, str) or not doc.strip():
            return None
        # NamedTuple / dataclass / namedtuple generate "Name(field, ...)" as __doc__.
        if re.fullmatch(rf"\s*{re.escape(obj.__name__)}\(.*\)\s*", doc, flags=re.S):
            return None
        return doc
    doc = getattr(obj, "__doc__", None)
    return doc if isinstance(doc, str) and doc.strip() else None


def _module_names(mod: types.ModuleType, package: str) -> Iterator[tuple[str, object]]:
    explicit = getattr(mod, "__all__", None)
    if explicit is not None:
        for name in explicit:
            yield name, getattr(mod, name)
        return
    # a package with lazy attributes (PEP 562 ``__getattr__``, e.g. ``certun``) lists them in
    # ``dir``; fetching one imports it
    names = dir(mod) if hasattr(mod, "__getattr__") else list(vars(mod))
    for name in names:
        if name.startswith("_"):
            continue
        obj = getattr(mod, name)
        if inspect.ismodule(obj):
            continue
        if (inspect.isclass(obj) or callable(obj)) and _is_certun(obj, package):
            yield name, obj


def _members(cls: type) -> Iterator[tuple[str, object]]:
    """Public methods and properties defined in ``cls`` itself."""
    fields = set(getattr(cls, "_fields", ())) | set(getattr(cls, "__dataclass_fields__", {}))
    for name, raw in vars(cls).items():
        if name.startswith("_") or name in fields or name in _SKIP_MEMBERS:
            continue
        if isinstance(raw, property):
            yield name, raw.fget
        elif isinstance(raw, (staticmethod, classmethod)):
            yield name, raw.__func__
        elif inspect.isfunction(raw):
            yield name, raw


def check(package: str = "certun") -> tuple[list[str], list[str]]:
    """Check every public symbol of ``package``.

    Returns:
      ``(checked, missing)``: dotted names of every symbol checked (each object once, under
      the first public name it was reached by) and of those without a docstring.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    checked: list[str] = []
    missing: list[str] = []
    seen: set[int] = set()

    def visit(name: str, obj: object) -> None:
        checked.append(name)
        if _own_doc(obj) is None:
            missing.append(name)

    for modname in public_modules(package):
        mod = importlib.import_module(modname)
        visit(modname, mod)
        for name, obj in _module_names(mod, package):
            if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
                continue  # submodules are walked on their own; data carry no docstring
            if not _is_certun(obj, package) or id(obj) in seen:
                continue
            seen.add(id(obj))
            qual = f"{modname}.{name}"
            visit(qual, obj)
            if inspect.isclass(obj):
                for mname, member in _members(obj):
                    if id(member) not in seen:
                        seen.add(id(member))
                        visit(f"{qual}.{mname}", member)
    return checked, missing


def exported_symbols(package: str = "certun") -> dict[str, str]:
    """Every exported name of ``package`` -> the dotted path where it is defined.

    A module's exported names are its ``__all__``, or, without one, the public functions and
    classes defined in ``package`` (explicit re-exports such as ``certun.certified_removal``).
    Functions and classes map to ``module.qualname``, modules to their name, and data
    (constants) to the deepest public module that exports the same object under the same
    name -- the module the API reference renders it in.
    """
    modules = {m: importlib.import_module(m) for m in public_modules(package)}
    out: dict[str, str] = {}
    for modname, mod in modules.items():
        for name, obj in _module_names(mod, package):
            if inspect.ismodule(obj):
                path = obj.__name__
            elif (inspect.isclass(obj) or callable(obj)) and _is_certun(obj, package):
                path = f"{obj.__module__}.{obj.__qualname__}"
            else:
                owners = [m for m, mm in modules.items()
                          if name in getattr(mm, "__all__", ()) and getattr(mm, name) is obj]
                path = f"{max(owners, key=lambda m: m.count('.'))}.{name}"
            out[f"{modname}.{name}"] = path
    return out


def site_anchors(site_dir: str | Path) -> set[str]:
    """The ``id`` of every heading of the built site (mkdocstrings uses dotted paths)."""
    ids: set[str] = set()
    for page in Path(site_dir).rglob("*.html"):
        ids.update(re.findall(r'\bid="([\w.]+)"', page.read_text(encoding="utf-8")))
    return ids


def missing_from_site(site_dir: str | Path, package: str = "certun") -> list[str]:
    """Exported names whose definition has no entry in the built API reference."""
    ids = site_anchors(site_dir)
    return sorted(f"{name} (defined as {path})" for name, path in exported_symbols(package).items()
                  if path not in ids and name not in ids)


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 when every public symbol is documented, 1 otherwise."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", default="certun")
    ap.add_argument("--list", action="store_true", help="print every symbol checked")
    ap.add_argument("--site", metavar="DIR", default=None,
                    help="also check that the site built in DIR (mkdocs build --site-dir DIR) "
                         "has an API entry for every name in an __all__")
    args = ap.parse_args(argv)
    checked, missing = check(args.package)
    if args.list:
        print("\n".join(checked))
    if missing:
        print(f"{len(missing)} of {len(checked)} public symbols have no docstring:",
              file=sys.stderr)
        for name in missing:
            print(f"  {name}", file=sys.stderr)
        return 1
    print(f"docstrings: all {len(checked)} public symbols of {args.package} are documented")
    if args.site is not None:
        absent = missing_from_site(args.site, args.package)
        if absent:
            print(f"{len(absent)} exported names are not in the API reference of {args.site}:",
                  file=sys.stderr)
            for name in absent:
                print(f"  {name}", file=sys.stderr)
            return 1
        print(f"site: every exported name of {args.package} has an API entry in {args.site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
