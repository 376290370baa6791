"""The ``hqsam-edge`` app: its commands' run (progress, temporaries, signals) and its one error path.

``Commands.main`` reads the command line, runs the command, and turns whatever ended it into one line on
stderr and an exit code (``exit_code``): our errors (``HQSamEdgeError``, also from an option's check while
the options are read), typer's usage errors (an unknown option, a value not among the choices, a missing
argument: never the boxed usage text), an interruption (with what was removed and kept), running out of
memory. ``Command.invoke`` runs one command inside its session; every command takes ``--verbose`` /
``--quiet`` from there.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from ..atomic import cleanup_summary, private_tempdir, take_ledger
from ..errors import HQSamEdgeError
from ..interrupts import interruption, signals_raise
from ..progress import Reporter, reporting
from .options import Quiet, Verbose

# The exception types of the click that typer runs on: click itself, or the copy typer carries since 0.2x
# (``typer.BadParameter`` is one of them in either case).
_click = importlib.import_module(typer.BadParameter.__module__)
ClickException: type[Exception] = _click.ClickException
ClickUsageError: type[Exception] = _click.UsageError
NoArgsIsHelp: Any = getattr(_click, "NoArgsIsHelpError", ())  # click >= 8.2; before, the help exits with 0


def error_line(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def exit_code(exc: BaseException) -> int:
    """What ended a command (``exc``), as one line on stderr (none for an exit asked for) and the exit code.

    An interruption anywhere in the chain counts first (a library may wrap it in its own error); an
    exception that is none of ours is a bug, and raised again with its traceback."""
    stop = interruption(exc)
    if isinstance(exc, typer.Exit):  # typer.Exit(n) in a command, --help
        return exc.exit_code
    if stop is not None:
        error_line(f"{stop}: {cleanup_summary()}")
        return stop.exit_code
    if isinstance(exc, HQSamEdgeError):
        error_line(str(exc))
        return exc.exit_code
    if isinstance(exc, NoArgsIsHelp):  # a bare `hqsam-edge`: the help, as typer shows it
        typer.echo(exc.format_message(), err=True)
        return exc.exit_code
    if isinstance(exc, ClickUsageError):
        ctx = exc.ctx
        error_line(exc.format_message() + (f" (see `{ctx.command_path} --help`)" if ctx else ""))
        return exc.exit_code
    if isinstance(exc, ClickException):
        error_line(exc.format_message())
        return exc.exit_code
    if isinstance(exc, typer.Abort):
        error_line("aborted")
        return 1
    if isinstance(exc, KeyboardInterrupt):  # outside a command's signals_raise (while the options were read)
        error_line(f"interrupted: {cleanup_summary()}")
        return 130
    if isinstance(exc, MemoryError):
        error_line("out of memory; try a smaller backbone or fewer prompts per call")
        return 1
    if isinstance(exc, BrokenPipeError):  # `hqsam-edge info | head`: the reader left; nothing more to say
        with contextlib.suppress(OSError, ValueError):  # no flush error at exit either (Python's SIGPIPE note)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    raise exc


class Commands(TyperGroup):
    """The app's command group: ``main`` runs a command line through the one error path (``exit_code``)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        """Run ``args`` (default: the process's) and exit with its code; ``standalone_mode=False`` (a caller
        that handles errors itself) runs typer's own ``main``, which raises them."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        args = sys.argv[1:] if args is None else list(args)
        try:
            with self.make_context(prog_name or self.name or "hqsam-edge", args, **extra) as ctx:
                self.invoke(ctx)
        except BaseException as exc:  # every way a command ends goes through exit_code
            sys.exit(exit_code(exc))
        sys.exit(0)


@contextlib.contextmanager
def session(verbose: bool, quiet: bool) -> Iterator[None]:
    """Where a command runs: progress to stderr (``-v``: also each step; ``-q``: none), warnings as lines,
    SIGINT / SIGTERM raising ``Interrupted`` (so that temporaries go as the stack unwinds), ``tempfile``
    pointed at a folder of its own, and a fresh record of what failed work removed and kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.showwarning = lambda msg, *a, **k: typer.echo(f"warning: {msg}", err=True)
        take_ledger()
        with signals_raise(), private_tempdir(), reporting(None if quiet else Reporter(verbose=verbose)):
            yield


def _progress_params() -> list[Any]:
    """``--verbose`` and ``--quiet`` as typer makes them (from ``options.Verbose`` / ``Quiet``)."""

    def progress(verbose: Verbose = False, quiet: Quiet = False) -> None:
        """Only its options are used."""

    maker = typer.Typer(add_completion=False)
    maker.command()(progress)
    return list(typer.main.get_command(maker).params)


class Command(TyperCommand):
    """A command of the app: its own options, then ``--verbose`` / ``--quiet``; it runs inside ``session``."""

    def __init__(self, *args: Any, params: list[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, params=[*(params or []), *_progress_params()], **kwargs)

    def invoke(self, ctx: Any) -> Any:
        verbose, quiet = ctx.params.pop("verbose"), ctx.params.pop("quiet")
        with session(verbose, quiet):
            return super().invoke(ctx)


app = typer.Typer(
    name="hqsam-edge",
    cls=Commands,
    help="HQ-SAM from PyTorch checkpoints to verified ONNX / TensorRT deployments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(name: str | None = None) -> Any:
    """``@command()``: register a function as a command of ``app`` (a ``Command``)."""
    return app.command(name, cls=Command)
