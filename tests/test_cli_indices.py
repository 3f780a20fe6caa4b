"""`certun forget --index`: a bad index is one line on stderr, exit 2, naming value and range."""

import jax
import numpy as np
import pytest

from certun.cli import main
from certun.data import normalize_rows
from certun.ledger import Ledger

N = 20


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    rng = np.random.default_rng(5)
    X = normalize_rows(rng.standard_normal((N, 4)))
    y = np.where(np.arange(N) % 2 == 0, 1.0, -1.0)
    path = tmp_path_factory.mktemp("idx") / "led"
    Ledger.create(path, X, y, jax.random.key(1),
                  config=dict(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4))
    return path


@pytest.mark.parametrize("index, fragment", [
    ("99999999999999999999", "out-of-range index 99999999999999999999 (valid range 0..19"),
    (str(2**63), f"out-of-range index {2**63} (valid range 0..19"),
    (str(2**63 - 1), f"out-of-range index {2**63 - 1} (valid range 0..19"),
    ("20", "out-of-range index 20 (valid range 0..19"),
])
def test_out_of_range_index_names_value_and_range(ledger, capsys, index, fragment):
    code = main(["forget", str(ledger), "--index", index])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("certun forget: error: --index: ") and fragment in err[0], err
    assert Ledger.open(ledger).generation == 0


@pytest.mark.parametrize("index, fragment", [
    ("-1", "row index in 0..n-1 (n rows in the training set), got -1"),
    ("1.5", "integer row index 0..n-1 (n rows in the training set), got '1.5'"),
    ("abc", "got 'abc'"),
])
def test_non_index_is_one_line_exit_2(ledger, capsys, index, fragment):
    with pytest.raises(SystemExit) as exc:
        main(["forget", str(ledger), "--index", index])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--index" in err[0], err
    assert fragment in err[0], err


def test_index_file_with_huge_index(ledger, tmp_path, capsys):
    f = tmp_path / "idx.txt"
    f.write_text("3, 99999999999999999999\n")
    code = main(["forget", str(ledger), "--index-file", str(f)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--index-file" in err[0], err
    assert "99999999999999999999 (valid range 0..19" in err[0], err
