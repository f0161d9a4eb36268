"""How a command ends, in one place: the error policy, signals, and what reaches the terminal.

Bad input and impossible requests (usage errors included) are one line on
stderr and exit 2; a bug in precdoctor is one line and exit 3, the traceback
only with --debug; Ctrl-C exits 130 and SIGTERM 143, after temporary weight
stores and staging folders are removed (a bisect's journal stays, so a rerun
resumes); an OSError (a full disk, a name too long) is the file system's
answer, not a bug: exit 2. Library warnings are shown only with --debug.
Text from a model or a file reaches the terminal with its control characters
escaped.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
import warnings

import click

from ..core.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    BadInput,
    Terminated,
)

log = logging.getLogger("precdoctor")


def printable(text: str, keep: str = "\n") -> str:
    """Text for a terminal: characters that could move the cursor, recolour or rewrite it (ESC, CR, U+2028...,
    from a node name or a transcript) are shown as escapes; only the line breaks of our own layout stay."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in keep else ascii(ch)[1:-1] for ch in text)


class _Messages(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = printable(record.getMessage(), keep="")
        return msg if record.levelno < logging.WARNING else f"precdoctor: {record.levelname.lower()}: {msg}"


class _Through(logging.StreamHandler):
    """Log lines written by ``write`` (the progress renderer's, which redraws its bars below the line)."""

    def __init__(self, write):
        super().__init__(sys.stderr)
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:  # noqa: BLE001  (logging's own policy: a failed log line never stops the run)
            self.handleError(record)


def setup_logging(quiet: bool, write=None) -> None:
    """Info lines unless ``quiet`` (warnings always) on stderr; through ``write`` when progress bars are drawn."""
    handler = logging.StreamHandler(sys.stderr) if write is None else _Through(write)
    handler.setFormatter(_Messages())
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def _one_line(text: str) -> str:
    return printable(" ".join(str(text).split()), keep="")


def _fail(message: str, code: int) -> None:
    click.echo(f"precdoctor: error: {_one_line(message)}", err=True)
    sys.exit(code)


def _stopped(how: str, code: int) -> None:
    weights = sys.modules.get("precdoctor.graph.weights")
    if weights is not None:
        weights.cleanup_all()  # staging folders went on the way up (their finally blocks)
    click.echo(f"precdoctor: {how}; temporary files removed (a bisect resumes from its journal)", err=True)
    ort = sys.modules.get("precdoctor.backends.ort")
    if ort is not None and ort.interrupted:
        # a call into ONNX Runtime was stopped (backends/ort.interruptible): its static destructors abort the process
        # after a terminated run or under one still going, so leave without them; everything of ours is cleaned up
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_unwinds():
    """SIGTERM unwinds the stack like Ctrl-C (finally blocks run) instead of killing the process mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def say(text: str, to_stderr: bool = False) -> None:
    """Print a summary; a reader that went away (``| head``) is not an error: the files are written already."""
    try:
        click.echo(printable(text), err=to_stderr)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's last flush finds somewhere to go


class Cli(click.Group):
    """The command group: every way out of a command goes through ``main`` and ``invoke`` here."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            no_args = type(exc).__name__ == "NoArgsIsHelpError"  # click >= 8.2: a bare group or command
            _fail(("missing command" if exc.ctx is None or exc.ctx.parent is None else "missing arguments") + where
                  if no_args else exc.format_message() + where, EXIT_BAD_INPUT)
        except click.ClickException as exc:
            _fail(exc.format_message(), EXIT_BAD_INPUT)
        except click.Abort:
            _stopped("interrupted", EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else EXIT_OK)

    def invoke(self, ctx):
        debug = bool(ctx.params.get("debug"))
        with _sigterm_unwinds(), warnings.catch_warnings():
            if not debug:  # library warnings are not ours to print; what matters is checked and said in words
                warnings.simplefilter("ignore")
            try:
                return super().invoke(ctx)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except BadInput as exc:
                _fail(str(exc), EXIT_BAD_INPUT)
            except MemoryError:
                _fail("out of memory (try fewer or shorter input samples, or --memory-budget)", EXIT_BAD_INPUT)
            except OSError as exc:  # the file system said no (a name too long, a full disk, a permission): not a bug
                _fail(f"{exc.strerror or exc}" + (f": {str(exc.filename)[:200]}" if exc.filename else ""), EXIT_BAD_INPUT)
            except KeyboardInterrupt:
                _stopped("interrupted", EXIT_INTERRUPTED)
            except Terminated:
                _stopped("terminated (SIGTERM)", EXIT_TERMINATED)
            except Exception as exc:  # noqa: BLE001 - a bug of ours: say so in one line
                if debug:
                    traceback.print_exc()
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                click.echo(f"precdoctor: internal error: {type(exc).__name__}: {_one_line(first)} (a bug in precdoctor; "
                           "run again with --debug for the traceback)", err=True)
                sys.exit(EXIT_INTERNAL)
