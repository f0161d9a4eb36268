"""A run record -> one self-contained HTML postmortem (inline CSS and SVG, nothing fetched at view time).

Everything taken from the model or the data (node, tensor and op names,
transcripts) reaches the page through jinja2's autoescape, and through
report/svg.py's escaping for the plots. Rendering is deterministic: the same
run record and run folder give the same bytes.
"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import require
from ..core.files import write_text
from .page import build_page
from .plots import figures


def _environment():
    jinja2 = require("jinja2", "report", "the HTML report")
    env = jinja2.Environment(loader=jinja2.PackageLoader("precdoctor.report", "templates"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                             undefined=jinja2.StrictUndefined)
    from ..analysis.acceptance import measure_label
    from .numbers import count, num, pct

    env.filters["g"] = num
    env.filters["pct"] = pct
    env.filters["count"] = count  # the same thousands separator as the verdict sentence
    env.filters["measure"] = measure_label
    env.filters["name"] = lambda s: name_breaks(s, jinja2)
    return env


BREAK_AFTER = "/.:"  # where an ONNX name (``/encoder/ln_post/Pow``, ``layer0.attn``) may wrap: after its separators ('_' joins
# the parts of one word, as in ``ln_post``)


def name_breaks(name, jinja2) -> object:
    """A node or tensor name, escaped, with a line-break opportunity (``<wbr>``) after each separator, so a long
    name wraps between its parts rather than inside a word."""
    text = str(jinja2.utils.markupsafe.escape(name))
    for sep in BREAK_AFTER:
        text = text.replace(sep, sep + "<wbr>")
    return jinja2.utils.markupsafe.Markup(text)


def render(run, outdir: Path | None = None) -> str:
    """The HTML of a bisect, compare or wer run; command files are read from ``outdir`` (the run's folder) only."""
    page = build_page(run, outdir)
    return _environment().get_template("report.html.j2").render(page=page, figs=figures(page))


def render_to(run, path: Path, outdir: Path | None = None) -> Path:
    return write_text(path, render(run, outdir))
