"""Names and paths in the command files precdoctor writes, quoted for the parsers that read them back.

- trtexec (samples/common/sampleOptions.cpp) splits ``--layerPrecisions`` on
  ',' with no escape, then each item on its *last* ':' and strips single
  quotes from the name; a name holding '*' is also a wildcard pattern. So a
  name is wrapped in '...', and one holding ',', ''' or '*' cannot be
  expressed exactly (reported, not silently mangled).
- Polygraphy takes one argparse word per ``name:float32`` and splits on the last
  ':' (args_util.parse_arglist_to_tuple_list); a word starting with '-' would be
  read as an option, so such names cannot be expressed.
- AutoCast's ``--nodes_to_exclude`` takes regexes (``re.match``): anchored with
  ``^...\\Z``, escaped, and every non-printable character written as a regex escape.
- Every word is one bash word that reads back exactly (``shell_word``); nothing a
  model or a file holds can end a quote or a line: non-printable characters
  (newline, CR, ESC, U+2028/2029, bidi controls) are written as escapes, names in
  comment lines are JSON-quoted ASCII. A NUL cannot be passed in argv at all.
"""
from __future__ import annotations

import json
import re


def comment_safe(name: str) -> str:
    """A name as it may appear in a comment line: JSON-quoted ASCII (no newline, CR, NUL, DEL or Unicode separator)."""
    return json.dumps(name, ensure_ascii=True).replace("\x7f", "\\u007f")


def shell_word(s: str) -> str:
    """One bash word that reads back as exactly ``s`` (no NUL: argv cannot carry one).

    Printable text goes in single quotes; text with any non-printable character goes in
    ANSI-C quotes with those characters as \\xHH escapes of their UTF-8 bytes, which bash
    decodes the same way in any locale.
    """
    if "\0" in s:
        raise ValueError("a NUL byte cannot be passed as a command-line argument")
    if s and re.fullmatch(r"[A-Za-z0-9_./=:+,@%-]+", s):
        return s
    if s.isprintable():
        return "'" + s.replace("'", "'\\''") + "'"
    out = []
    for ch in s:
        if ch == "\\" or ch == "'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
    return "$'" + "".join(out) + "'"


def path_word(path: str) -> str:
    """A relative path as a positional argument: never read as an option."""
    return shell_word(path if not path.startswith("-") else "./" + path)


_CANNOT = {
    "trtexec": ((",", "','"), ("'", "a single quote"), ("*", "'*' (a wildcard to trtexec)"), ("\0", "a NUL byte")),
    "polygraphy": (("\0", "a NUL byte"),),
    "autocast": (("\0", "a NUL byte"),),
}


def unexpressible(fmt: str, name: str) -> str | None:
    """Why ``fmt``'s command cannot name ``name`` exactly, or None."""
    for ch, why in _CANNOT.get(fmt, ()):
        if ch in name:
            return why
    if fmt == "polygraphy" and name.startswith("-"):
        return "a leading '-' (argparse reads it as an option)"
    return None


def trtexec_name(name: str) -> str:
    """A layer or tensor name in a trtexec list (``name:value``): quoted where trtexec's parser needs it."""
    return f"'{name}'" if re.search(r"[^A-Za-z0-9_./\-]", name) or ":" in name else name


def regex_literal(name: str) -> str:
    """``re.escape`` with every non-printable character as a regex escape: the pattern is printable text."""
    out = []
    for ch in name:
        if ch.isprintable():
            out.append(re.escape(ch))
        else:
            cp = ord(ch)
            out.append(f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}")
    return "".join(out)
