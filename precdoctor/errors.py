"""The one exception type the CLI turns into a single line and exit code 2."""


class BadInput(Exception):
    """Something the user gave us is unusable (file, names, shapes, audio, paths).

    The message is shown as is, so it must be one self-explanatory line.
    """
