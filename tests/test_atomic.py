"""Temporaries that name their owner: removed by their own process on failure or interruption, by the next
process only once their owner is gone (never while it runs); SIGINT / SIGTERM as an exception."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from hqsam_edge import atomic, owners
from hqsam_edge.errors import UsageError
from hqsam_edge import interrupts
from hqsam_edge.interrupts import Interrupted, deferred, interruption, signals_raise

ROOT = Path(__file__).resolve().parents[1]


def _dead_tag() -> str:
    """An owner tag of this realm whose process is gone (this pid, another start time)."""
    return f"{owners.MARK}{owners.realm()}-{os.getpid()}-1"


def test_a_live_owners_temporaries_stay_and_a_killed_ones_go(tmp_path):
    code = textwrap.dedent(f"""
        import sys, tempfile, time
        from hqsam_edge import atomic
        atomic.TempDir({str(tmp_path)!r}, "out")  # a staging folder, as staged_folder makes them (kept open)
        tempfile.mkstemp(prefix=atomic.temp_prefix("data.json"), suffix=".part", dir={str(tmp_path)!r})
        print("ready", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "ready"
        (tmp_path / ".other.json.abc123.part").write_text("not ours: no owner tag")
        names = sorted(p.name for p in tmp_path.iterdir())
        assert len(names) == 3 and sum(f"-{proc.pid}-" in n for n in names) == 2
        assert atomic.remove_stale(tmp_path) == []  # its owner runs: two processes may share a folder
    finally:
        proc.kill()
        proc.wait()
    removed = atomic.remove_stale(tmp_path)
    assert len(removed) == 2 and sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abc123.part"]


def test_another_realms_temporary_goes_once_nobody_holds_its_lock(tmp_path):
    """A killed container's staging, seen from the next container: its pid means nothing here, its lock does."""
    foreign = tmp_path / f".out.{owners.MARK}00000000-7-123.xyz"
    foreign.mkdir()
    fd = os.open(foreign, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # its owner, alive
    assert not owners.is_stale(foreign) and atomic.remove_stale(tmp_path) == []
    os.close(fd)  # its owner is gone (a kill releases the lock the same way)
    assert atomic.remove_stale(tmp_path) == [foreign] and not foreign.exists()


def test_a_staged_folder_killed_between_its_renames_gets_the_old_folder_back(tmp_path):
    set_aside = tmp_path / f".out.old.{_dead_tag()}.abc"
    (set_aside / "out").mkdir(parents=True)
    (set_aside / "out" / "manifest.json").write_text("{}")
    new = tmp_path / f".out.{_dead_tag()}.def"
    new.mkdir()
    assert sorted(atomic.remove_stale(tmp_path)) == sorted([set_aside, new])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (tmp_path / "out" / "manifest.json").exists()


def test_staged_folder_replaces_only_when_complete_and_says_what_it_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    stale = tmp_path / f".out.{_dead_tag()}.zzz"
    stale.mkdir()
    atomic.take_ledger()
    with pytest.raises(RuntimeError), atomic.staged_folder(out, "artifact folder") as staging:
        assert not stale.exists()  # a dead process's staging for the same folder is gone first
        (staging / "new.txt").write_text("new")
        raise RuntimeError("the work failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "old.txt").exists()
    removed, kept = atomic.take_ledger()
    assert len(removed) == 1 and f".out.{owners.tag()}." in removed[0] and kept == [f"kept {out} as it was"]
    with atomic.staged_folder(out) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_write_leaves_no_temporary_on_failure(tmp_path):
    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError(28, "No space left on device")

    atomic.take_ledger()
    with pytest.raises(UsageError, match="cannot write .*No space left"):
        atomic.atomic_write(tmp_path / "a.json", fail)
    assert list(tmp_path.iterdir()) == []
    assert "a.json" in atomic.cleanup_summary()


def test_private_tempdir_holds_every_temporary_of_a_command(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"hqsam-edge.{_dead_tag()}.old"
    stale.mkdir()
    with atomic.private_tempdir() as private:
        assert not stale.exists() and private.parent == tmp_path
        inner = Path(tempfile.mkdtemp(prefix="ort.quant."))  # a library's own temporary
        assert inner.parent == private
    assert tempfile.tempdir == str(tmp_path) and list(tmp_path.iterdir()) == []


def test_signals_raise_an_exception_that_unwinds_finally_blocks():
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(Interrupted) as err, signals_raise():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            cleaned.append(True)
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal while the first unwinds (within GRACE_S): ignored
            time.sleep(0.05)
    assert cleaned == [True] and err.value.exit_code == 143 and str(err.value) == "interrupted by SIGTERM"
    assert isinstance(err.value, KeyboardInterrupt)  # code that cleans up after Ctrl-C does the same here
    assert signal.getsignal(signal.SIGTERM) == before


def test_deferred_holds_a_signal_until_the_block_ends():
    done = []
    with pytest.raises(Interrupted) as err, signals_raise():
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done.append("the commit finished")
        done.append("never")
    assert done == ["the commit finished"] and err.value.exit_code == 130


def test_a_signal_after_the_grace_time_raises_again(monkeypatch):
    """Code that caught the first interruption must not make the process unstoppable."""
    monkeypatch.setattr(interrupts, "GRACE_S", 0.0)
    with pytest.raises(Interrupted), signals_raise():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Interrupted:
            pass  # swallowed, as some library might
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)


def test_an_interruption_a_library_wrapped_in_its_own_error_is_found():
    with pytest.raises(ImportError) as err:
        try:
            raise Interrupted(signal.SIGTERM)
        except BaseException as exc:  # what pybind11 does when a module's initialisation is interrupted
            raise ImportError("initialization failed") from exc
    assert interruption(err.value).exit_code == 143 and interruption(ValueError("other")) is None
