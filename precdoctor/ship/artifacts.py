"""Artifacts to ship a plan: flags for TensorRT 8.6-10, the mixed ONNX for TensorRT 11, AutoCast.

Every command names files relative to the output folder it is written in, so
each runs as pasted from that folder (bash); every name and path in them is
quoted for the parser that reads it (quoting.py), and a name a format cannot
express is reported, not silently mangled.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import BadInput
from ..core.files import write_text
from ..graph.loading import save_model
from ..graph import GraphView
from ..core.limits import COMMAND_FILE_MAX_BYTES
from ..numerics.mixed import check, constants_note, mixed_model
from ..planning.plan import Plan
from ..core.quoting import comment_safe, path_word, regex_literal, shell_word, trtexec_name, unexpressible
from ..core.records import Record
from ..numerics.recurrent import RECURRENT
from ..numerics.schema import forced_fp32

FORMATS = ("trtexec", "polygraphy", "autocast", "mixed-onnx")
FILES = {"trtexec": ("trtexec.txt",), "polygraphy": ("polygraphy.txt",), "autocast": ("autocast.txt",),
         "mixed-onnx": ("model.mixed.onnx", "model.mixed.onnx.data", "trtexec-11.txt")}
_FILE_FIELDS = ("trtexec", "polygraphy", "autocast", "mixed_onnx", "trtexec11", "report", "verify_trt11", "verify_trt10")


@dataclass
class Artifacts(Record):
    """File names (in the output folder) of what a run wrote, and what they could not express."""

    trtexec: str | None = None
    polygraphy: str | None = None
    autocast: str | None = None
    mixed_onnx: str | None = None
    trtexec11: str | None = None
    report: str | None = None
    verify_trt11: str | None = None  # verification on the user's engine (verification/): TensorRT 11.1+
    verify_trt10: str | None = None  # and TensorRT 8.6-10.x with Polygraphy
    casts: int | None = None
    forced: dict[str, str] = field(default_factory=dict)  # pinned in every artifact besides the plan's pins: node -> why
    unexpressible: dict[str, list[str]] = field(default_factory=dict)  # format -> pins its file cannot name

    def validate(self, where: str) -> None:
        check_file_names(self, _FILE_FIELDS, where)

    def command_files(self) -> dict[str, str]:
        """Artifact -> file name, for the command files the report shows."""
        return {k: v for k, v in (("trtexec", self.trtexec), ("polygraphy", self.polygraphy), ("trtexec11", self.trtexec11),
                                  ("autocast", self.autocast), ("verify_trt11", self.verify_trt11),
                                  ("verify_trt10", self.verify_trt10)) if v}


def plain_file_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def check_file_names(record, fields, where: str) -> None:
    """File names only: a run file naming a path (``/etc/passwd``, ``../x``) is refused."""
    for f in fields:
        name = getattr(record, f)
        if name is not None and not plain_file_name(name):
            raise BadInput(f"{where}.{f}: {name!r} is not a file name inside the run's folder")


def _split(fmt: str, pins) -> tuple[list[str], list[str]]:
    pins = sorted(pins)
    return [p for p in pins if unexpressible(fmt, p) is None], [p for p in pins if unexpressible(fmt, p) is not None]


def join_words(words: list[str]) -> str:
    """Command words one per line, continued as a shell reads them."""
    return " \\\n    ".join(words)


def trtexec_build_words(model: str, plan: Plan, outputs_of: dict[str, int], tf32: bool | None) -> list[str]:
    """trtexec's words that build ``plan`` weakly typed (8.6-10.x); names it cannot express are left out."""
    ok, _ = _split("trtexec", plan.pins)
    words = ["trtexec", shell_word(f"--onnx={model}"), f"--{plan.format.trt_name}"]
    if ok:
        words.append("--precisionConstraints=obey")
        words.append(shell_word("--layerPrecisions=" + ",".join(f"{trtexec_name(p)}:fp32" for p in ok)))
        words.append(shell_word("--layerOutputTypes=" + ",".join(
            f"{trtexec_name(p)}:{'+'.join(['fp32'] * outputs_of.get(p, 1))}" for p in ok)))
    return words + ([] if tf32 is not False else ["--noTF32"])


def outputs_of(graph: GraphView | None, pins) -> dict[str, int]:
    return {p: max(1, len(graph.node(p).output)) if graph else 1 for p in pins}


def trtexec_command(model: str, plan: Plan, graph: GraphView | None = None, tf32: bool | None = None,
                    engine: str = "model.plan") -> tuple[str, list[str]]:
    """Returns (command, names that trtexec cannot express)."""
    words = trtexec_build_words(model, plan, outputs_of(graph, plan.pins), tf32)
    words += ["--profilingVerbosity=detailed", "--exportLayerInfo=layers.json", shell_word(f"--saveEngine={engine}")]
    return join_words(words), _split("trtexec", plan.pins)[1]


def polygraphy_build_words(model: str, plan: Plan, tf32: bool | None, check: list[str] = ()) -> list[str]:
    """``polygraphy run`` building ``plan`` with TensorRT 8.6-10 from ``model``; ``check``: the words that say what to
    compare against, placed before the layer precisions (argparse ends their list only at the next option)."""
    ok, _ = _split("polygraphy", plan.pins)
    words = ["polygraphy", "run", path_word(model), "--trt", f"--{plan.format.name}"]
    if tf32:  # Polygraphy builds with TF32 off unless asked; trtexec and TensorRT's API with it on
        words.append("--tf32")
    words += list(check)
    if ok:
        words += ["--precision-constraints", "obey", "--layer-precisions"] + [shell_word(f"{p}:float32") for p in ok]
    return words


def polygraphy_args(model: str, plan: Plan, tf32: bool | None = None) -> str:
    """Without references (``precdoctor pins``): the engine against ONNX Runtime's FP32 on Polygraphy's own inputs."""
    return join_words(polygraphy_build_words(model, plan, tf32, ["--onnxrt"]))


def autocast_regexes(pins) -> list[str]:
    # \Z, not $: '$' also matches before a trailing newline, so '^a$' would exclude a node named 'a\n' too
    return [f"^{regex_literal(p)}\\Z" for p in sorted(pins) if unexpressible("autocast", p) is None]


def autocast_command(model: str, plan: Plan, out: str = "model.autocast.onnx") -> str:
    words = ["python", "-m", "modelopt.onnx.autocast", shell_word(f"--onnx_path={model}"), shell_word(f"--output_path={out}"),
             f"--low_precision_type={plan.precision}"]
    regexes = autocast_regexes(plan.pins)
    if regexes:
        words.append("--nodes_to_exclude")
        words += [shell_word(r) for r in regexes]
    # inf thresholds: AutoCast's range rules would add FP32 islands of their own; the search already decided
    words += ["--data_max=inf", "--init_max=inf", "--keep_io_types"]
    return join_words(words)


def trtexec11_command(mixed: str, tf32: bool | None = None, engine: str = "model.plan") -> str:
    return join_words(["trtexec", shell_word(f"--onnx={mixed}")] + ([] if tf32 is not False else ["--noTF32"])
                 + ["--profilingVerbosity=detailed", "--exportLayerInfo=layers.json", shell_word(f"--saveEngine={engine}")])


def _warning(fmt: str, pins) -> str:
    bad = [p for p in sorted(pins) if unexpressible(fmt, p)]
    if not bad:
        return ""
    return (f"# WARNING: {fmt} cannot name these pinned layers exactly; use the mixed ONNX (or another tool's file):\n"
            + "".join(f"#   {comment_safe(b)}: {unexpressible(fmt, b)}\n" for b in bad))


def tf32_note(tf32: bool | None) -> str:
    """The TF32 choice of the commands, stated: TensorRT and trtexec compute FP32 inner products in TF32 unless told."""
    if tf32 is None:
        return "# TF32: not verified for this plan (trtexec's default is on; add --noTF32 for true FP32)\n"
    if tf32:
        return "# TF32: on (trtexec's default; Polygraphy needs --tf32): the plan holds with TF32 in its FP32 islands\n"
    return "# TF32: off (--noTF32; Polygraphy's default): the plan needs true FP32 in its FP32 islands\n"


def _forced_note(precision: str, forced: dict[str, str]) -> str:
    if not forced:
        return ""
    return (f"# and {len(forced)} node(s) the verified plan computes in FP32 because the ONNX schema has no {precision} form;\n"
            "# pinned here too, so that a weakly typed build computes what was verified:\n"
            + "".join(f"#   {comment_safe(n)}: {why}\n" for n, why in forced.items()))


def _rnn_note(graph: GraphView, plan: Plan) -> str:
    rnn = [p for p in sorted(plan.pins) if graph.node(p).op_type in RECURRENT]
    if not rnn:
        return ""
    return ("# NOTE: TensorRT's ONNX parser unrolls LSTM/GRU/RNN into a loop of layers, only one of them named after\n"
            "# the node: layer precisions cannot keep the whole recurrence FP32. Prefer the mixed ONNX (trtexec-11.txt) for:\n"
            + "".join(f"#   {comment_safe(r)}\n" for r in rnn))


# ---- writing and reading the files

def write_artifacts(outdir: Path, model_path: str, graph: GraphView, plan: Plan, formats=FORMATS,
                    relative_to: Path | None = None, tf32: bool | None = None,
                    polygraphy: tuple[str, list[str]] | None = None) -> Artifacts:
    """Write the requested artifacts into ``outdir``; the model is named relative to ``relative_to``
    (default ``outdir``): the folder the files will finally live in, when ``outdir`` is a staging folder.
    ``tf32``: whether the plan holds with TF32 in its FP32 islands (None: not verified); the commands say so.
    ``polygraphy``: (commands, notes) that check the plan against saved references (verification/scripts.py), in
    place of the comparison with ONNX Runtime on Polygraphy's own inputs."""
    outdir = Path(outdir)
    model = os.path.relpath(Path(model_path).resolve(), Path(relative_to or outdir).resolve())
    forced = forced_fp32(graph, plan)
    out = Artifacts(forced=forced)
    verified = plan
    plan = Plan(plan.precision, frozenset(plan.pins) | frozenset(forced), plan.why)  # every FP32 node of the verified plan
    header = (f"# precdoctor: {plan.precision} with {len(verified.pins)} node(s) pinned to FP32; run from this folder with bash\n"
              + _forced_note(plan.precision, forced) + tf32_note(tf32))
    commands = {
        "trtexec": ("trtexec.txt", "# TensorRT 8.6 - 10.x (weakly typed build with layer precision constraints)\n",
                    lambda: trtexec_command(model, plan, graph, tf32)[0]),
        "polygraphy": ("polygraphy.txt", "# TensorRT 8.6 - 10.x via Polygraphy (compares against ONNX Runtime)\n",
                       lambda: polygraphy_args(model, plan, tf32)) if polygraphy is None else
                      ("polygraphy.txt", "# TensorRT 8.6 - 10.x via Polygraphy: builds the plan, then checks each sample this run saved\n"
                       "# (reference/) against its FP32 outputs with the acceptance's tolerances; exit status 0: every sample passes\n"
                       + "".join(f"# NOT checked: {comment_safe(n)}\n" for n in polygraphy[1]), lambda: polygraphy[0]),
        "autocast": ("autocast.txt", "# ModelOpt AutoCast: the same FP32 islands as a mixed ONNX\n", lambda: autocast_command(model, plan)),
    }
    for fmt, (name, about, command) in commands.items():
        if fmt in formats:
            note = _warning(fmt, plan.pins) + (_rnn_note(graph, plan) if fmt != "autocast" else "")
            write_text(outdir / name, header + about + note + command() + "\n")
            setattr(out, fmt, name)
            bad = [p for p in sorted(plan.pins) if unexpressible(fmt, p)]
            if bad:
                out.unexpressible[fmt] = bad
    if "mixed-onnx" in formats:
        mixed = mixed_model(graph, verified)
        check(mixed.model)
        save_model(mixed.model, outdir / "model.mixed.onnx")
        write_text(outdir / "trtexec-11.txt", header + "# TensorRT 11 is always strongly typed: the precision lives in the ONNX graph,\n"
                   "# so there are no precision flags (--fp16 and --layerPrecisions were removed).\n"
                   + "# Constants: " + constants_note(plan.format) + "\n" + trtexec11_command("model.mixed.onnx", tf32) + "\n")
        out.mixed_onnx, out.trtexec11, out.casts = "model.mixed.onnx", "trtexec-11.txt", mixed.casts
    return out


def read_command_file(outdir: Path, name: str) -> str | None:
    """A command file of a run, read only when it is a regular file directly inside ``outdir``: not a
    symlink, not a hard link to something else, not larger than a command file can be."""
    if not plain_file_name(name):
        return None
    path = Path(outdir) / name
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > COMMAND_FILE_MAX_BYTES:
            return None
        return fh.read(COMMAND_FILE_MAX_BYTES).decode("utf-8", errors="replace")
