"""The deletion ledger: exact round trip, same results as in memory, bad requests, crashes."""

import json
import os
import select
import shutil
import signal
import time

import jax
import numpy as np
import pytest

import certun.ledger as ledger_mod
from certun import Certificate, ValidationError
from certun.data import load_digits_3v8
from certun.ledger import Ledger, LedgerError
from certun.unlearners import certified_removal

CFG = dict(lam=1e-2, sigma=10.0, epsilon=8.0, delta=1e-4)
PRIVATE_KEYS = {"bounds", "solver", "indices", "b", "b_norm", "train_grad_norm",
                "true_residual", "diagnostics", "view"}


@pytest.fixture(scope="module")
def data():
    ds = load_digits_3v8()
    return ds.X_train[:160], ds.y_train[:160]


@pytest.fixture(scope="module")
def base(tmp_path_factory, data):
    """A ledger after training and two requests, and its unlearner (compiled once)."""
    path = tmp_path_factory.mktemp("base") / "led"
    led = Ledger.create(path, *data, jax.random.key(0), config=CFG, dataset={"name": "d38"})
    led.forget([3])
    led.forget([5, 6])
    return path, led.unlearner


def _copy(base, tmp_path):
    path, unl = base
    dst = tmp_path / "led"
    shutil.copytree(path, dst)
    return Ledger.open(dst, unlearner=unl)


def _fields(state):
    out = {}
    for name, val in state._asdict().items():
        if val is not None and name == "key":
            val = jax.random.key_data(val)
        out[name] = None if val is None else np.asarray(val)
    return out


def _assert_same_state(a, b):
    fa, fb = _fields(a), _fields(b)
    assert fa.keys() == fb.keys()
    for name in fa:
        if fa[name] is None:
            assert fb[name] is None, name
        else:
            assert fa[name].dtype == fb[name].dtype, name
            np.testing.assert_array_equal(fa[name], fb[name], err_msg=name)


def _private_keys(obj, path=""):
    found = []
    if isinstance(obj, dict):
        if obj.get("private") is True and ("value" in obj or "limit" in obj):
            found.append(path + "/value")
        for k, v in obj.items():
            if k in PRIVATE_KEYS or (k == "private" and not isinstance(v, bool)):
                found.append(path + "/" + k)
            found += _private_keys(v, path + "/" + k)
    elif isinstance(obj, list):
        for v in obj:
            found += _private_keys(v, path)
    return found


def test_reopen_reproduces_state_records_and_certificates_exactly(base, tmp_path):
    led = _copy(base, tmp_path)
    rec, res = led.forget([10, 11, 12])
    back = Ledger.open(led.path)
    _assert_same_state(back.state, led.state)
    _assert_same_state(back.state, res.state)
    assert back.records == led.records and back.generation == led.generation == 3
    assert back.certificate().to_dict() == res.certificate.to_dict()
    stored = Certificate.from_dict(rec["private"]["certificate"])
    assert stored.to_dict() == res.certificate.to_dict()
    np.testing.assert_array_equal(np.asarray(back.params), np.asarray(res.params))
    pub = back.records[-1]["public"]
    assert pub["utc"].endswith("+00:00") and pub["version"] and pub["outcome"] == "unlearned"
    assert pub["budget"]["left"] == pytest.approx(pub["budget"]["total"] - pub["budget"]["used"])
    assert back.records[-1]["private"]["indices"] == [10, 11, 12]
    assert pub["removed_total"] == 6 and pub["removed_in_request"] == 3


@pytest.mark.parametrize("extra", [{}, dict(sigma=0.02, epsilon=1.0, remeasure=True),
                                   dict(factor="cholesky")],
                         ids=["bounds", "remeasure", "cholesky"])
def test_ledger_path_equals_in_memory_path(data, tmp_path, extra):
    cfg = dict(CFG, update="cached", auto_retrain=True, **extra)
    unl = certified_removal(**cfg)
    st = unl.init(*data, jax.random.key(7))
    led = Ledger.create(tmp_path / "led", *data, jax.random.key(7), config=cfg)
    _assert_same_state(led.state, st)
    remeasured = 0
    for req in ([1], [4, 9], [20], [30, 31]):
        ref = unl.unlearn(st, req)
        led = Ledger.open(led.path, unlearner=led.unlearner)  # a fresh load for every request
        _, res = led.forget(req)
        np.testing.assert_array_equal(np.asarray(res.params), np.asarray(ref.params))
        assert res.certificate.to_dict() == ref.certificate.to_dict()
        assert res.outcome == ref.outcome == "unlearned"
        remeasured += "residual_remeasured" in ref.diagnostics
        st = ref.state
    assert (remeasured >= 1) if extra.get("remeasure") else (remeasured == 0)
    _assert_same_state(Ledger.open(led.path).state, st)


def test_bad_requests_raise_and_write_nothing(base, tmp_path):
    led = _copy(base, tmp_path)
    before = sorted(os.listdir(led.path)), (led.path / "CURRENT").read_text()
    for req, match in (([3], "already removed"), ([10_000], "out-of-range"), ([-1], "out-of-range"),
                       ([], "empty"), ([8, 8], "repeats")):
        with pytest.raises(ValidationError, match=match):
            led.forget(req)
        assert led.generation == 2
    assert (sorted(os.listdir(led.path)), (led.path / "CURRENT").read_text()) == before


def test_budget_exhaustion_retrains_with_fresh_noise_and_is_recorded(data, tmp_path):
    led = Ledger.create(tmp_path / "led", *data, jax.random.key(0),
                        config=dict(CFG, sigma=0.02, epsilon=1.0))
    b0 = np.asarray(led.state.b).copy()
    rec, res = led.forget([0, 1, 2, 3, 4, 5])
    assert res.outcome == "retrained" and rec["public"]["outcome"] == "retrained"
    assert rec["public"]["retrains"] == 1 and int(led.state.retrains) == 1
    assert res.certificate.valid and rec["public"]["certificate"]["status"] == "holds"
    assert not np.allclose(np.asarray(led.state.b), b0)
    assert rec["public"]["budget"]["used"] == pytest.approx(float(led.state.train_grad_norm))
    back = Ledger.open(led.path)
    _assert_same_state(back.state, led.state)
    assert back.status()["retrains"] == 1 and back.status()["removed"] == 6


def test_status_is_public_only(base, tmp_path):
    led = _copy(base, tmp_path)
    st = led.status()
    text = json.dumps(st)
    assert _private_keys(st) == []
    assert st["requests"] == 2 and st["removed"] == 3 and st["certificate_status"] == "holds"
    assert st["budget"]["left"] == pytest.approx(st["budget"]["total"] - st["budget"]["used"])
    b_norm = led.records[0]["private"]["b_norm"]
    assert repr(b_norm) not in text


def test_open_rejects_non_ledgers_and_corruption(base, tmp_path):
    with pytest.raises(LedgerError, match="not a certun ledger"):
        Ledger.open(tmp_path)
    led = _copy(base, tmp_path)
    bundle = sorted((led.path / "arrays").iterdir())[-1]
    raw = bytearray(bundle.read_bytes())
    raw[-200] ^= 0xFF
    bundle.write_bytes(bytes(raw))
    with pytest.raises(LedgerError):
        Ledger.open(led.path)
    with pytest.raises(ValidationError, match="not empty"):
        Ledger.create(led.path, np.eye(3), np.ones(3), jax.random.key(0), config=CFG)


# ------------------------------------------------------------------------- crashes

class _Faults:
    """Count (and optionally fail) the write path's os.replace / os.fsync / file writes."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = 0, fail_at

    def _tick(self):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise OSError(f"injected failure at I/O call {self.calls}")

    def install(self, mp):
        real_replace, real_fsync, real_fdopen = os.replace, os.fsync, os.fdopen
        outer = self

        class _File:
            def __init__(self, fh):
                self._fh = fh

            def write(self, b):
                outer._tick()
                return self._fh.write(b)

            def __getattr__(self, name):
                return getattr(self._fh, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self._fh.__exit__(*exc)

        def replace(*a, **k):
            self._tick()
            return real_replace(*a, **k)

        def fsync(*a, **k):
            self._tick()
            return real_fsync(*a, **k)

        mp.setattr(os, "replace", replace)
        mp.setattr(os, "fsync", fsync)
        mp.setattr(os, "fdopen", lambda *a, **k: _File(real_fdopen(*a, **k)))


def _summary(led):
    return (led.generation, len(led.records), int(led.state.n_removed),
            np.asarray(led.state.W).tobytes(), np.asarray(led.state.mask).tobytes())


def test_injected_failure_at_every_io_call_leaves_before_or_after(base, tmp_path, monkeypatch):
    led = _copy(base, tmp_path)
    before = _summary(led)
    counter = _Faults()
    with monkeypatch.context() as mp:
        counter.install(mp)
        probe = _copy(base, tmp_path / "probe")
        probe.forget([50])
    after = _summary(probe)
    n_calls = counter.calls
    assert n_calls >= 12  # bundle, record, manifest, CURRENT: write + fsync + rename + dir fsync
    outcomes = set()
    hooks = ["bundle", "arrays_written", "record_written", "manifest_written", "committed",
             "cleanup"]
    for trial in range(n_calls + len(hooks)):
        led = _copy(base, tmp_path / f"t{trial}")
        with monkeypatch.context() as mp:
            if trial < n_calls:
                _Faults(fail_at=trial + 1).install(mp)
            else:
                def boom(step, target=hooks[trial - n_calls]):
                    if step == target:
                        raise RuntimeError(f"injected failure at step {step}")

                mp.setattr(ledger_mod, "_FAULT", boom)
            try:
                led.forget([50])
                raised = False
            except (OSError, RuntimeError):
                raised = True
        disk = Ledger.open(led.path, unlearner=led.unlearner)
        assert _summary(disk) in (before, after), trial
        assert _summary(led) == _summary(disk), trial  # memory agrees with disk
        outcomes.add((raised, _summary(disk) == after))
        # and the ledger carries on: the request is applied exactly once
        if _summary(disk) == before:
            disk.forget([50])
        assert _summary(Ledger.open(led.path)) == after
        with pytest.raises(ValidationError, match="already removed"):
            disk.forget([50])
    assert (True, False) in outcomes and (False, True) in outcomes


def _kill_trials(led, n_trials, rng):
    """Fork a child that commits the next request and pause it at a chosen I/O call; SIGKILL it."""
    counter = _Faults()
    unl = led.unlearner
    points = None
    results = []
    for trial in range(n_trials):
        remaining = np.flatnonzero(np.asarray(led.state.mask) > 0)
        idx = [int(rng.choice(remaining))]
        before = _summary(led)
        res = unl.unlearn(led.state, idx)
        rec = {"public": {"record": led.generation + 1, "kind": "forget", "outcome": res.outcome,
                          "removed_total": int(res.state.n_removed)},
               "private": {"indices": idx}}
        prep = led._prepare(res.state, rec)
        after_W = np.asarray(res.state.W).tobytes()
        if points is None:  # count the I/O calls of one commit, in a throw-away copy
            probe_dir = led.path.parent / "probe"
            shutil.rmtree(probe_dir, ignore_errors=True)
            shutil.copytree(led.path, probe_dir)
            probe = Ledger.open(probe_dir, unlearner=unl)
            import pytest as _pt
            with _pt.MonkeyPatch.context() as mp:
                counter.install(mp)
                probe._write(probe._prepare(res.state, rec))
            points = counter.calls
        pause_at = 1 + trial % (points + 1)  # the last value pauses after the whole commit
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: file I/O only, never JAX
            os.close(r)
            try:
                count = [0]
                real_replace, real_fsync = os.replace, os.fsync

                def pause(count=count, pause_at=pause_at, w=w):
                    count[0] += 1
                    if count[0] == pause_at:
                        os.write(w, b"p")
                        time.sleep(120)

                def replace(*a, _real=real_replace, **k):
                    pause()
                    return _real(*a, **k)

                def fsync(*a, _real=real_fsync, **k):
                    pause()
                    return _real(*a, **k)

                os.replace, os.fsync = replace, fsync
                led._write(prep)
                os.write(w, b"p")  # finished without pausing (pause_at past the last call)
                time.sleep(120)
            finally:
                os._exit(0)
        os.close(w)
        ready, _, _ = select.select([r], [], [], 60)
        assert ready, "child did not reach the pause point"
        os.read(r, 1)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        disk = Ledger.open(led.path, unlearner=unl)
        s = _summary(disk)
        assert s == before or (s[0] == before[0] + 1 and s[3] == after_W), trial
        assert len(disk.records) == disk.generation + 1
        assert [r_["public"]["record"] for r_ in disk.records] == list(range(disk.generation + 1))
        results.append(s != before)
        led = disk
    return led, results


@pytest.mark.filterwarnings("ignore:os.fork")  # the forked child does file I/O only, never JAX
def test_sigkill_inside_the_write_window(base, tmp_path):
    led = _copy(base, tmp_path)
    led, results = _kill_trials(led, 100, np.random.default_rng(0))
    assert any(results) and not all(results)
    # the survivors' removals are counted once: mask, counter and journal agree
    removed = {i for rec in led.records[1:] for i in rec["private"]["indices"]}
    assert int(led.state.n_removed) == len(removed) == int((np.asarray(led.state.mask) == 0).sum())
