"""Who owns a temporary file or folder, and whether that process is gone.

Every temporary of ``hqsam_edge.atomic`` carries its owner in its name, ``hqtmp-<realm>-<pid>-<start>``: the
process id, the process's start time (clock ticks after boot, from ``/proc``, so that a reused pid does not
look alive) and the *realm* in which those two numbers mean something (a digest of the kernel's boot id and
the pid namespace: another boot, another container or another machine is another realm). While it works on a
temporary, the owner also holds an ``flock`` on it.

A temporary is stale when its owner is gone: in this realm, when no process has its pid and start time (a
zombie counts as gone); in another realm (a killed container's staging seen from the next container, litter
in a folder copied from another machine), when nobody holds its lock. Where locks are not supported (some
network file systems), another realm's temporaries are left alone: nothing here can tell whether their owner
still runs. Standard library only.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, owners judged by pid alone
    fcntl = None  # type: ignore[assignment]

MARK = "hqtmp-"
TAG = re.compile(MARK + r"(?P<realm>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)")
_PROC = Path("/proc")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@functools.cache
def realm() -> str:
    """This kernel boot and pid namespace, as 8 hex digits (the host name where there is no ``/proc``)."""
    boot = _read(_PROC / "sys/kernel/random/boot_id") or socket.gethostname()
    try:
        namespace = os.readlink(_PROC / "self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{boot}|{namespace}".encode()).hexdigest()[:8]


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks after boot); None if there is none, or it is a zombie."""
    stat = _read(_PROC / str(pid) / "stat")
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22 of proc(5); fields[0] is field 3


@functools.cache
def _own_start(pid: int) -> str:
    return start_time(pid) or "0"


def tag() -> str:
    """This process's owner tag, ``hqtmp-<realm>-<pid>-<start>`` (computed again after a fork)."""
    pid = os.getpid()
    return f"{MARK}{realm()}-{pid}-{_own_start(pid)}"


def alive(pid: int, start: str) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs (in this realm)."""
    if (_PROC / "self/stat").exists():
        return start_time(pid) == start
    try:  # pragma: no cover - no /proc (macOS): the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def hold(fd: int) -> None:
    """Lock the open file or folder ``fd`` for as long as it stays open (best effort: some file systems
    cannot)."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass


def _lock_free(path: Path) -> bool | None:
    """True: nobody holds ``path``'s lock; False: somebody does; None: locks cannot tell here."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None
    finally:
        os.close(fd)


def is_stale(path: Path) -> bool:
    """Whether ``path`` is a temporary whose owner is gone (False for anything without an owner tag)."""
    match = TAG.search(path.name)
    if match is None:
        return False
    if match["realm"] == realm():
        return not alive(int(match["pid"]), match["start"])
    return _lock_free(path) is True
