"""Writing files and folders so that a failure (or a kill) never leaves a half-written one in place.

``atomic_write`` writes a file under a temporary name in the target's folder
and renames it onto the target; ``staged_folder`` builds a whole folder under
a temporary name beside the target and swaps it in once it is complete (the
old folder, if any, is replaced only then). Temporary names start with
``.<name>.`` and end with ``suffix`` (``.part`` by default), so a rerun can
find and remove what a killed run left. Write errors become one-line
``UsageError`` messages.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError

TMP_SUFFIX = ".part"


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp made it private
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@contextmanager
def staged_folder(out: str | Path, what: str = "folder") -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``out``; when the block ends without error it becomes ``out``."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise UsageError(f"cannot write to {out.parent}: {exc.strerror or exc}") from None
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp made it private
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except OSError as exc:
        raise UsageError(f"cannot write the {what} {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
