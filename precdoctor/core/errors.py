"""Errors the user can act on, and the exit codes the command line gives for each outcome."""

EXIT_OK = 0  # healthy, fixed, written
EXIT_FAILED = 1  # the verdict is a failure: diverges, unfixed, a pin not honoured
EXIT_BAD_INPUT = 2  # something the user gave cannot be used; one line on stderr
EXIT_INTERNAL = 3  # a bug in precdoctor; one line, the traceback with --debug
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_TERMINATED = 143  # SIGTERM (128 + 15): a job scheduler or `kill` stopped the run


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (temporary stores removed, the journal kept).

    A BaseException, as KeyboardInterrupt is, so that no ``except Exception`` on
    the way up mistakes it for an error of the step it interrupted.
    """


class BadInput(Exception):
    """Something the user gave us is unusable (file, names, shapes, audio, paths, options).

    The message is shown as is, so it must be one self-explanatory line.
    """


class MissingExtra(BadInput):
    """An optional dependency group is not installed (``pip install 'precdoctor[NAME]'``)."""

    def __init__(self, extra: str, module: str, what: str):
        super().__init__(f"{what} needs the optional package {module!r}: pip install 'precdoctor[{extra}]'")


def require(module: str, extra: str, what: str):
    """Import an optional dependency, or fail with the install line for its extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(extra, module, what) from None
