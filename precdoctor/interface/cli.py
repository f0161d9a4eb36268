"""Command line: parse options into a pipeline's parameters, call it, print its record's summary.

Exit codes (errors.py, the policy in exits.py): 0 ok, 1 failed verdict, 2 bad
input (one line on stderr), 3 a bug in precdoctor (one line; the traceback with
--debug), 130 Ctrl-C, 143 SIGTERM.
"""
from __future__ import annotations

import contextlib
import sys

import click

from .. import __version__
from . import terminal
from .cli_options import (engine_options, engine_params, input_spec, model_options, pin_options, target_option, task_options,
                          task_params)
from ..core.errors import EXIT_FAILED, EXIT_OK, BadInput
from .exits import Cli, say
from .exits import setup_logging as _logging
from ..backends import GRAPH_OPT_LEVELS, VERIFY_BACKENDS
from ..core.limits import DEFAULT_ACCEPT, DEFAULT_ATOL, DEFAULT_BUDGET, DEFAULT_REL_L2, POSITION_ULPS
from ..planning.plan import FIX_MODES, PRECISIONS
from ..core.status import BisectVerdict, CompareVerdict


def _examples(*lines: str) -> str:
    """An epilog click prints as written (\b stops it rewrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


EXAMPLES = {
    "compare": _examples("precdoctor compare model.onnx --inputs sample.npz --precision fp16",
                         "precdoctor compare model.onnx --input-shapes 'x:[1,16000]' --pin op:LayerNormalization --json r.json",
                         "precdoctor compare encoder.onnx --task whisper --data clips/ --under-test decoder --precision bf16"),
    "scan": _examples("precdoctor scan model.onnx --inputs sample.npz --json risks.json"),
    "bisect": _examples("precdoctor bisect model.onnx --inputs a.npz --inputs b.npz --accept 'max-abs<=1' --out fix",
                        "precdoctor bisect encoder.onnx --task whisper --data clips/ --accept 'wer<=+0.5' --out fix",
                        "precdoctor bisect encoder.onnx --task whisper --data clips/ --under-test decoder \\",
                        "    --decoder decoder_model_merged.onnx --accept 'token-agreement>=1' --out fix-decoder",
                        "precdoctor bisect model.onnx --inputs a.npz --check './wer_on_my_engine.sh {model} {pins}' --out fix"),
    "wer": _examples("precdoctor wer encoder.onnx --task whisper --data clips/ --precision fp16 --other",
                     "precdoctor wer model.onnx --task ctc --vocab vocab.json --data manifest.json --pins fix/pins.json"),
    "report": _examples("precdoctor report fix/run.json -o postmortem.html"),
    "verify": _examples("precdoctor verify fix --backend ort-cuda", "precdoctor verify fix --backend emulate --json verify.json"),
    "pins": _examples("precdoctor pins fix/pins.json --format trtexec --out ship",
                      "precdoctor pins fix/pins.json --format mixed-onnx --model other/model.onnx --out ship"),
    "check-engine": _examples("trtexec --onnx=model.onnx --fp16 ... --profilingVerbosity=detailed --exportLayerInfo=layers.json",
                              "precdoctor check-engine model.onnx --pins fix/pins.json --layer-info layers.json"),
}


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="precdoctor")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def main(debug):
    """Find and fix reduced-precision failures of ONNX models (FP16/BF16, TensorRT)."""


quiet_option = click.option("--quiet", is_flag=True,
                            help="No progress on stderr (bars with counts and ETA are drawn only when stderr is a terminal).")


@contextlib.contextmanager
def _reporting(quiet: bool, info: bool):
    """Progress bars on stderr when it is a terminal and not --quiet; the info log lines when ``info`` and not
    --quiet (warnings always), written above the bars."""
    from ..core import progress

    bars = progress.for_terminal(quiet)
    _logging(quiet or not info, bars.write if bars is not None else None)
    with progress.reporting(bars):
        yield


ALLOW_INTERNAL_HELP = ("Accept a plan whose outputs pass while new Inf/NaN is born inside the graph (x/inf = 0 can hide an "
                       "overflow); by default such a plan fails, and it is flagged either way.")


def _json_help(what: str) -> str:
    return f"{what} ('-': stdout, the summary then goes to stderr)."


@main.command(short_help='FP32 and FP16/BF16 side by side, tensor by tensor.', epilog=EXAMPLES['compare'])
@model_options
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp16", show_default=True, help="Reduced precision to compare.")
@pin_options
@engine_options
@click.option("--rtol", default=DEFAULT_REL_L2, show_default=True, help="An output diverges past this relative L2 error.")
@click.option("--atol", type=float, default=None,
              help=f"A position of an output is off past this max abs error [default: {DEFAULT_ATOL:g}, or {POSITION_ULPS} roundings of "
                   "the format at the output's FP32 |max| where larger (limits.POSITION_ULPS)].")
@click.option("--top", default=8, show_default=True, type=click.IntRange(min=0), help="Offending tensors to list.")
@click.option("--allow-internal-nonfinite", is_flag=True, help=ALLOW_INTERNAL_HELP)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE",
              help=_json_help("Write the full per-tensor results here"))
@click.option("--report", "report_out", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE",
              help="Also write the HTML report of this comparison ('-': stdout).")
@quiet_option
@task_options
def compare(model, inputs, shapes, seed, precision, pin_files, pin_selectors, rtol, atol, top, allow_internal_nonfinite, json_out,
            report_out, quiet, **o):
    """Run FP32 and reduced precision side by side and report where they part."""
    from ..analysis.comparison import Tolerance
    from ..core.files import is_stdout
    from ..pipelines.compare import CompareParams, run

    with _reporting(quiet, info=False):
        r = run(CompareParams(model, precision, input_spec(inputs, shapes, seed), tuple(pin_selectors), tuple(pin_files),
                              engine_params(o), Tolerance(rtol, atol), json_out, allow_internal_nonfinite, task_params(o), report_out))
    to_stderr = is_stdout(json_out) or is_stdout(report_out)
    lines = terminal.compare_summary(r, top).split("\n")
    if report_out and not is_stdout(report_out):
        lines.insert(len(lines) - 1, f"report: {report_out}")  # the verdict stays last
    say("\n".join(lines), to_stderr=to_stderr)
    sys.exit(EXIT_FAILED if CompareVerdict(r.verdict).failed else EXIT_OK)


@main.command(short_help='FP32-only risk report (ranges, epsilons, norms).', epilog=EXAMPLES['scan'])
@model_options
@target_option
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE",
              help=_json_help("Write the risks and per-tensor ranges here"))
@quiet_option
def scan(model, inputs, shapes, seed, target, json_out, quiet):
    """FP32-only risk report: ranges past FP16/BF16, vanishing epsilons, decomposed norms."""
    from ..core.files import is_stdout
    from ..pipelines.scan import ScanParams, run

    with _reporting(quiet, info=False):
        r = run(ScanParams(model, input_spec(inputs, shapes, seed), json_out, target))
    say(terminal.scan_summary(r), to_stderr=is_stdout(json_out))


@main.command(short_help='Fewest FP32 pins, proven, with artifacts and report.', epilog=EXAMPLES['bisect'])
@model_options
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp16", show_default=True, help="Reduced precision to fix.")
@click.option("--accept", "accept", multiple=True, metavar="CRITERION",
              help="Acceptance criterion, repeatable: finite, max-abs<=X, rel-l2<=X, cosine>=X, argmax-agreement>=X, "
                   "[OUTPUT:]..., wer<=+X, cer<=+X, wer<=X or token-agreement>=X (with --task/--data). Default: " + ", ".join(DEFAULT_ACCEPT) + ". "
                   "finite-inside (no new Inf/NaN inside the graph) always applies unless --allow-internal-nonfinite.")
@click.option("--budget", default=DEFAULT_BUDGET, show_default=True, help="Most evaluations (plans run) the search may spend.")
@engine_options
@click.option("--out", "outdir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for pins.json, flags, mixed ONNX, run.json, report.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE",
              help=_json_help("Also write run.json here"))
@click.option("--allow-internal-nonfinite", is_flag=True, help=ALLOW_INTERNAL_HELP)
@click.option("--fix", "fix", type=click.Choice(FIX_MODES), default="pins", show_default=True,
              help="pins: FP32 pins. rewrite: replace the culprits by equivalent FP16/BF16-safe subgraphs, verified "
                   "(model.rewritten.onnx). auto: rewrite what a verified rewrite covers, pin the rest.")
@click.option("--check", "check", metavar="CMD",
              help="An external judge of each plan the search confirms (your own script: a TensorRT build and WER, say): "
                   "run without a shell with the plan's model.mixed.onnx and pins.json appended to its words (or in place of "
                   "the words {model} and {pins}); exit 0 = the plan passes. Journaled and counted like any evaluation.")
@click.option("--no-baselines", is_flag=True, help="Skip the range-rule and prefix-bisection baselines.")
@click.option("--no-report", is_flag=True, help="Do not write OUT/index.html.")
@quiet_option
@click.option("--workers", default=1, show_default=True, type=int, metavar="N",
              help="Ray actors evaluating plans, the samples split across them (needs precdoctor[scale]); same results.")
@click.option("--ray-address", default=None, metavar="ADDR", help="A running Ray cluster for the workers (default: one on this host).")
@click.option("--worker-cpus", default=None, type=int, metavar="K",
              help="CPU slots, and ONNX Runtime threads, per CPU worker [default: this host's cores shared out].")
@task_options
def bisect(model, inputs, shapes, seed, precision, accept, budget, outdir, json_out, allow_internal_nonfinite, fix, check, no_baselines,
           no_report, quiet, workers, ray_address, worker_cpus, **o):
    """Find the fewest nodes to keep in FP32, prove it, and write the artifacts to ship."""
    from ..backends.distributed import ScaleParams
    from ..core.files import is_stdout
    from ..pipelines.bisect import BisectParams, run

    with _reporting(quiet, info=True):
        r = run(BisectParams(model, outdir, precision=precision, inputs=input_spec(inputs, shapes, seed), accept=tuple(accept),
                             budget=budget, engine=engine_params(o), task=task_params(o), baselines=not no_baselines,
                             report=not no_report, json_out=json_out, allow_internal_nonfinite=allow_internal_nonfinite, fix=fix,
                             check_cmd=check, scale=ScaleParams(workers, ray_address, worker_cpus)))
    say(terminal.bisect_summary(r, outdir), to_stderr=is_stdout(json_out))
    sys.exit(EXIT_FAILED if BisectVerdict(r.verdict).failed else EXIT_OK)


@main.command(name="wer", short_help='WER/CER per configuration on a dataset.', epilog=EXAMPLES['wer'])
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp16", show_default=True,
              help="Reduced precision to compare with FP32 (fp32: the reference row only).")
@pin_options
@engine_options
@click.option("--other/--no-other", default=False, show_default=True, help="Also the other reduced format (bf16 next to fp16).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE",
              help=_json_help("Write the WER table here"))
@quiet_option
@task_options
def wer_cmd(model, precision, pin_files, pin_selectors, other, json_out, quiet, **o):
    """WER/CER per configuration (FP32, naive FP16/BF16, pinned) on a dataset, worst utterances side by side."""
    from ..core.files import is_stdout
    from ..pipelines.wer_table import WerParams, run

    task = task_params(o)
    if task is None:
        raise BadInput("wer needs --task (ctc, whisper or package.module:factory) and --data")
    with _reporting(quiet, info=True):
        r = run(WerParams(model, task, precision, tuple(pin_selectors), tuple(pin_files), other, engine_params(o), json_out))
    say(terminal.wer_summary(r), to_stderr=is_stdout(json_out))


@main.command(short_help="Check a bisect's shipped plan against its FP32 outputs.", epilog=EXAMPLES['verify'])
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--backend", type=click.Choice(VERIFY_BACKENDS), default="ort-cuda", show_default=True,
              help="ort-cuda: model.mixed.onnx on onnxruntime-gpu; emulate: its CPU stand-in (the plan's emulation).")
@click.option("--graph-opt", type=click.Choice(GRAPH_OPT_LEVELS), default="all", show_default=True,
              help="ONNX Runtime graph optimizations for ort-cuda (all: a default session's).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE",
              help=_json_help("Write the verdict per sample here"))
def verify(folder, backend, graph_opt, json_out):
    """Run a bisect's shipped plan (FOLDER: its --out) against the FP32 outputs it saved; exit 0 pass, 1 fail."""
    from ..core.files import is_stdout
    from ..pipelines.verify import VerifyParams, run

    _logging(quiet=True)
    r = run(VerifyParams(folder, backend, graph_opt, json_out))
    say(terminal.verify_summary(r), to_stderr=is_stdout(json_out))
    sys.exit(EXIT_OK if r.passed else EXIT_FAILED)


@main.command(short_help='Render a run JSON as one HTML file.', epilog=EXAMPLES['report'])
@click.argument("run_json", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, allow_dash=True), required=True, metavar="FILE",
              help="HTML file to write ('-': stdout).")
def report(run_json, out):
    """Render a run JSON (bisect, compare or wer) as one self-contained HTML file."""
    from ..core.files import is_stdout
    from ..pipelines.report import ReportParams, run

    _logging(quiet=True)
    written = run(ReportParams(run_json, out))
    if not is_stdout(out):
        say(f"wrote {written}")


@main.command(short_help='Re-emit an artifact from a saved pins.json.', epilog=EXAMPLES['pins'])
@click.argument("pins_file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["trtexec", "polygraphy", "autocast", "mixed-onnx"]), required=True,
              help="Artifact to write.")
@click.option("--model", type=click.Path(dir_okay=False), metavar="FILE",
              help="The FP32 model (default: the one pins.json names, relative to its folder).")
@click.option("--out", "outdir", type=click.Path(file_okay=False), default=".", show_default=True, metavar="DIR", help="Folder to write into.")
def pins(pins_file, fmt, model, outdir):
    """Re-emit an artifact from a saved pins.json."""
    from ..pipelines.pins import PinsParams, run

    _logging(quiet=True)
    for path in run(PinsParams(pins_file, fmt, model, outdir)):
        say(f"wrote {path}")


@main.command(name="check-engine", short_help='Did a TensorRT engine honour the pins?', epilog=EXAMPLES['check-engine'])
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--pins", "pins_file", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="pins.json of the plan the engine was built with.")
@click.option("--layer-info", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="TensorRT layer information JSON (trtexec --profilingVerbosity=detailed --exportLayerInfo=FILE).")
def check_engine(model, pins_file, layer_info):
    """Check that a TensorRT engine honoured the FP32 pins (pins inside FP16 fused layers are not)."""
    from ..pipelines.check_engine import CheckEngineParams, run

    _logging(quiet=True)
    r = run(CheckEngineParams(model, pins_file, layer_info))
    say(terminal.pin_check_summary(r))
    sys.exit(EXIT_FAILED if r.not_honoured or r.unresolved or r.untyped else EXIT_OK)


if __name__ == "__main__":
    main()
