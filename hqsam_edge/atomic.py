"""Writing files and folders so that a failure, an interruption or a kill never leaves a half-written one in place.

``atomic_write`` writes a file under a temporary name in the target's folder
and renames it onto the target; ``staged_folder`` builds a whole folder under
a temporary name beside the target and swaps it in once it is complete (the
old folder, if any, is replaced only then). ``temp_dir`` is a temporary folder
of the process for a block (``calib``'s staging in an artifact folder), and
``private_tempdir`` points ``tempfile`` at one for a whole command, so that
the temporaries of every library it calls live there too.

Temporary names carry their owner (``hqsam_edge.owners``):
``.<name>.hqtmp-<realm>-<pid>-<start>.<random>[.part]``. They are removed by
their own process when it fails or is interrupted (``interrupts``), and
``remove_stale`` removes those of a process that died (SIGKILL, a killed
container), never those of a live one: two processes may share a folder.
What was removed, and what the failed work kept, is noted for the command
line's last line (``cleanup_summary``). Write errors become one-line
``UsageError`` messages.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .interrupts import deferred
from .owners import MARK, hold, is_stale, tag
from .errors import UsageError

TMP_SUFFIX = ".part"
_OLD = ".old"  # staged_folder's previous folder, while the new one is renamed into place
_LEDGER: dict[str, list[str]] = {"removed": [], "kept": []}


def temp_prefix(name: str, *, hidden: bool = True) -> str:
    """``.<name>.hqtmp-<realm>-<pid>-<start>.``: the start of this process's temporary names for ``name``."""
    return f"{'.' if hidden else ''}{name}.{tag()}."


def note_removed(path: str | Path) -> None:
    _LEDGER["removed"].append(str(path))


def note_kept(clause: str) -> None:
    """What failed work leaves, as a clause for ``cleanup_summary`` ("kept DIR as it was")."""
    _LEDGER["kept"].append(clause)


def take_ledger() -> tuple[list[str], list[str]]:
    """(temporaries removed by failed work, what failed work kept) since the last call; starts afresh."""
    removed, kept = list(_LEDGER["removed"]), list(_LEDGER["kept"])
    _LEDGER["removed"].clear()
    _LEDGER["kept"].clear()
    return removed, kept


def cleanup_summary() -> str:
    """One clause for the line an interrupted command ends with: what it removed and what it kept."""
    removed, kept = take_ledger()
    gone = f"removed {', '.join(removed)}" if removed else "no temporaries were left to remove"
    return f"{gone}; {'; '.join(dict.fromkeys(kept)) if kept else 'changed nothing else'}"


def atomic_write(path: str | Path, write: Callable[[str], object], *, suffix: str = TMP_SUFFIX,
                 make_parent: bool = False) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; ``UsageError`` if the folder is unusable."""
    path = Path(path)
    if make_parent:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not path.parent.exists():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    with _staged(path, write, suffix) as tmp:
        os.replace(tmp, path)
    return path


@contextmanager
def _staged(path: Path, write: Callable[[str], object], suffix: str) -> Iterator[str]:
    """A temporary beside ``path`` holding what ``write(tmp)`` wrote (mode 0644), for the body to put in place;
    removed on the way out if still there (and noted as removed when a failure or an interruption left it). An
    ``OSError`` becomes one ``UsageError`` line."""
    fd = tmp = None
    finished = False
    try:
        with deferred():  # the temporary exists only inside this try, so that its finally removes it
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=suffix, dir=path.parent)
        hold(fd)
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp made it private
        yield tmp
        finished = True
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
            if not finished:
                note_removed(tmp)


def atomic_create(path: str | Path, write: Callable[[str], object], *, suffix: str = TMP_SUFFIX) -> bool:
    """Create ``path`` with what ``write(tmp_path)`` wrote, unless it exists: whether this call created it.

    The file is hard-linked into place, so it appears complete or not at all, and of processes racing to
    create it (shards on one OUT) exactly one does. Where the file system has no hard links, an exclusive
    create (``O_EXCL``) still lets only one win, but a reader may see the file before its bytes."""
    path = Path(path)
    with _staged(path, write, suffix) as tmp:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here
            try:
                target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(target, "wb") as f:
                f.write(Path(tmp).read_bytes())
        return True


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


class TempDir:
    """A fresh folder ``<parent>/.<label>.hqtmp-....<random>`` of this process, locked until ``close()``
    removes it with what it holds. Use ``temp_dir`` for a block: it also removes the folder when the block
    is interrupted."""

    def __init__(self, parent: str | Path, label: str, *, hidden: bool = True) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=temp_prefix(label, hidden=hidden), dir=parent))
        self._fd: int | None = os.open(self.path, os.O_RDONLY)
        hold(self._fd)

    def close(self) -> bool:
        """Remove the folder; whether there was one to remove."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        existed = self.path.exists()
        shutil.rmtree(self.path, ignore_errors=True)
        return existed


@contextmanager
def temp_dir(parent: str | Path, label: str, *, hidden: bool = True) -> Iterator[Path]:
    """A ``TempDir`` for the block, removed when it ends; one removed because of an error or an interruption
    is noted (``cleanup_summary``)."""
    made: TempDir | None = None
    failed = False
    try:
        with deferred():  # made, and its name held, before a signal can stop this
            made = TempDir(parent, label, hidden=hidden)
        yield made.path
    except BaseException:
        failed = True
        raise
    finally:
        if made is not None and made.close() and failed:
            note_removed(made.path)


def _swap_in(staging: Path, out: Path) -> None:
    """Rename ``staging`` onto ``out``; an existing ``out`` is set aside first and removed after."""
    if not out.exists():
        os.replace(staging, out)
        return
    old: TempDir | None = None
    try:
        with deferred():  # never stop between the two renames: out would be missing
            old = TempDir(out.parent, out.name + _OLD)
            os.replace(out, old.path / out.name)
            try:
                os.replace(staging, out)
            except OSError:
                os.replace(old.path / out.name, out)  # the previous folder back
                raise
    finally:
        if old is not None:
            old.close()


@contextmanager
def staged_folder(out: str | Path, what: str = "folder") -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``out``; when the block ends without error it becomes ``out``.

    Staging that a dead process left for ``out`` is removed first."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(out.parent, prefix=f".{out.name}.")
    except OSError as exc:
        raise UsageError(f"cannot write to {out.parent}: {exc.strerror or exc}") from None
    done = False
    try:
        with temp_dir(out.parent, out.name) as staging:
            yield staging
            staging.chmod(0o755)  # mkdtemp made it private
            _swap_in(staging, out)
            done = True
    except OSError as exc:
        raise UsageError(f"cannot write the {what} {out}: {exc.strerror or exc}") from None
    finally:
        if not done:
            note_kept(f"kept {out} as it was" if out.exists() else f"wrote no {what} at {out}")


@contextmanager
def private_tempdir(label: str = "hqsam-edge") -> Iterator[Path]:
    """Point ``tempfile`` at a fresh folder of this process for the block, and remove it after.

    Every temporary of a command, its own and those of the libraries it calls (ONNX Runtime's quantizer,
    the calibration's augmented graphs), then lives in one folder that the command's end or interruption
    removes and that the next command removes after a kill."""
    base = Path(tempfile.gettempdir())
    remove_stale(base, prefix=f"{label}.")
    previous = tempfile.tempdir
    with temp_dir(base, label, hidden=False) as path:
        tempfile.tempdir = str(path)
        try:
            yield path
        finally:
            tempfile.tempdir = previous


def _restore_set_aside(entry: Path) -> None:
    """A dead ``staged_folder`` killed between its two renames: put the previous folder back."""
    match = re.match(rf"^\.(.+){re.escape(_OLD)}\.{MARK}", entry.name)
    if match and (entry / match[1]).exists() and not (entry.parent / match[1]).exists():
        os.replace(entry / match[1], entry.parent / match[1])


def remove_stale(folder: str | Path, *, prefix: str = "", recursive: bool = False) -> list[Path]:
    """Remove the temporaries in ``folder`` (named ``prefix...``; below it too if ``recursive``) whose owner
    is gone (``owners.is_stale``); what was removed. Errors (a read-only folder) are left for later."""
    folder = Path(folder)
    pattern = f"{glob.escape(prefix)}*{MARK}*"
    try:
        found = sorted(folder.rglob(pattern) if recursive else folder.glob(pattern))
    except OSError:
        return []
    removed: list[Path] = []
    for entry in found:
        if any(p in entry.parents for p in removed) or not is_stale(entry):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                _restore_set_aside(entry)
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed
