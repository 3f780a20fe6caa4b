"""``python -m experiments.koloskova2025``: runs ``run.py``'s ``main``."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "certun_experiments_koloskova2025_run", Path(__file__).resolve().parent / "run.py")
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)

if __name__ == "__main__":
    raise SystemExit(_run.main())
