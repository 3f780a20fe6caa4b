"""Progress bars on host loops (``certun.progress``): on/off rules, stderr only, nesting, no effect.

Bars are drawn only when asked (``enable=``), else when ``CERTUN_PROGRESS`` says so, else when
stderr is a terminal; under pytest stderr is captured (not a terminal), so the default is off.
A forced bar writes to stderr and never to stdout, nested bars share one display, and
training with a bar gives bit-for-bit the parameters of training without one.
"""

from __future__ import annotations

import io

import jax
import numpy as np
import pytest

from certun import progress
from certun.progress import ENV_VAR, ProgressBar, enabled, progress_bar, track


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    yield
    assert progress._LIVE == []  # every bar's display was closed


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("value, expected", [
    ("0", False), ("false", False), ("off", False), ("no", False),
    ("1", True), ("true", True), ("ON", True), ("yes", True),
])
def test_environment_variable_turns_bars_on_and_off(monkeypatch, value, expected):
    """``CERTUN_PROGRESS`` wins over the terminal test; an explicit flag wins over both."""
    monkeypatch.setenv(ENV_VAR, value)
    assert enabled() is expected
    assert enabled(True) is True and enabled(False) is False


def test_default_follows_whether_stderr_is_a_terminal(monkeypatch):
    """No variable: a bar exactly when stderr is a TTY (never in a pipe, a file or CI log)."""
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert enabled() is False
    monkeypatch.setattr("sys.stderr", _TTY())
    assert enabled() is True
    monkeypatch.setenv(ENV_VAR, "0")
    assert enabled() is False
    monkeypatch.setenv(ENV_VAR, "maybe")  # not a recognised value: back to the TTY test
    assert enabled() is True


def test_no_tty_means_a_silent_no_op(capsys):
    """Without a terminal the bar is inactive and writes nothing anywhere."""
    with progress_bar(3, "grid") as bar:
        assert isinstance(bar, ProgressBar) and not bar.active
        for i in range(3):
            bar.advance(1, info=f"point {i}")
    assert list(track(range(4), "items")) == [0, 1, 2, 3]
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_forced_bar_draws_on_stderr_only(monkeypatch, capsys):
    """``CERTUN_PROGRESS=1``: the bar (description, count, info) goes to stderr, not stdout."""
    monkeypatch.setenv(ENV_VAR, "1")
    with progress_bar(4, "guo grid") as bar:
        assert bar.active
        for _ in range(4):
            bar.advance(1, info="lambda=0.01")
    out = capsys.readouterr()
    assert out.out == ""
    assert "guo grid" in out.err and "4/4" in out.err and "lambda=0.01" in out.err


def test_enable_false_wins_over_the_environment(monkeypatch, capsys):
    """``enable=False`` (e.g. a ``--quiet`` flag) silences a bar the environment asks for."""
    monkeypatch.setenv(ENV_VAR, "1")
    with progress_bar(2, "quiet", enable=False) as bar:
        assert not bar.active
        bar.advance(2)
    assert capsys.readouterr().err == ""


def test_nested_bars_share_one_display(monkeypatch, capsys):
    """An inner bar is a task of the outer bar's display and is removed when its block ends."""
    monkeypatch.setenv(ENV_VAR, "1")
    with progress_bar(2, "seeds") as outer:
        for seed in range(2):
            with progress_bar(3, f"training {seed}") as inner:
                assert inner.active and inner._progress is outer._progress
                assert len(progress._LIVE) == 1  # one live display, two tasks
                assert len(outer._progress.tasks) == 2
                inner.advance(3)
            assert len(outer._progress.tasks) == 1  # the inner task is gone
            outer.advance(1)
        assert list(track([7, 8], "inner items")) == [7, 8]  # track nests the same way
    assert progress._LIVE == []
    err = capsys.readouterr().err
    assert "seeds" in err and "2/2" in err


def test_bar_closes_when_the_loop_raises(monkeypatch, capsys):
    """An exception inside the block closes the display (no live bar is left behind)."""
    monkeypatch.setenv(ENV_VAR, "1")
    with pytest.raises(RuntimeError, match="boom"):
        with progress_bar(5, "failing"):
            raise RuntimeError("boom")
    assert progress._LIVE == []
    capsys.readouterr()


@pytest.mark.parametrize("env", ["1", "0"])
def test_training_with_progress_gives_identical_params(monkeypatch, capsys, env):
    """``train(progress=True)`` (bar, or lines with bars off) equals ``progress=None`` exactly.

    Reporting happens on the host between compiled chunks; it must not change the result,
    and it writes to stderr only.
    """
    from certun.data import load_digits
    from certun.nn import TrainConfig, mlp, train

    ds = load_digits()
    X, y = ds.X_train[:120], ds.y_train[:120]
    net = mlp(64, (8,), 10, "tanh", input_scale=8.0)
    cfg = TrainConfig(epochs=4, batch_size=32, learning_rate=1e-2, weight_decay=1e-3,
                      radius=1.5, log_every=2, dtype="float64")
    silent = train(net, X, y, jax.random.key(1), cfg, progress=None)
    capsys.readouterr()
    monkeypatch.setenv(ENV_VAR, env)
    shown = train(net, X, y, jax.random.key(1), cfg, progress=True)
    out = capsys.readouterr()
    assert out.out == ""
    assert ("training" in out.err) if env == "1" else ("epoch 4/4" in out.err)
    for a, b in zip(jax.tree.leaves(silent.params), jax.tree.leaves(shown.params), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(silent.losses, shown.losses)
