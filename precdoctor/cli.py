"""Command line: parse, call the library, print. Exit 0 ok, 1 failed verdict, 2 bad input."""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from . import __version__
from .errors import BadInput


def guarded(fn):
    """Bad input becomes one line on stderr and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BadInput as exc:
            click.echo(f"precdoctor: error: {exc}", err=True)
            sys.exit(2)
        except MemoryError:
            click.echo("precdoctor: error: out of memory (try fewer or shorter input samples)", err=True)
            sys.exit(2)

    return wrapper


def write_json(path: str | None, data: dict) -> None:
    if not path:
        return
    from .files import dump_json

    dump_json(path, data)


def _stack(fn, opts):
    for o in reversed(opts):
        fn = o(fn)
    return fn


def model_options(fn):
    return _stack(fn, [
        click.argument("model", type=click.Path(dir_okay=False)),
        click.option("--inputs", "inputs", multiple=True, help="Input sample: .npz (keys = input names) or Polygraphy JSON; repeatable."),
        click.option("--input-shapes", "shapes", multiple=True, help="name:[d0,d1,...] for seeded random input when no --inputs; repeatable."),
        click.option("--seed", default=0, show_default=True, help="Seed for random inputs."),
    ])


def plan_options(fn):
    return _stack(fn, [
        click.option("--precision", type=click.Choice(["fp16", "bf16"]), default="fp16", show_default=True),
        click.option("--pins", "pin_files", multiple=True, help="pins.json to apply (repeatable)."),
        click.option("--pin", "pin_selectors", multiple=True, help="Pin nodes to FP32: NAME, glob:PAT, re:REGEX or op:OpType; repeatable."),
    ])


def engine_options(fn):
    """Which engine computes the reduced precision, and how (shared by compare, bisect, wer)."""
    return _stack(fn, [
        click.option("--profile", type=click.Choice(["fused", "strict", "ort-fused"]), default="fused", show_default=True,
                     help="Fused-op numerics: fused = LayerNormalization/InstanceNormalization FP32 inside (TensorRT, ORT CUDA); "
                          "strict = every primitive op in low precision; ort-fused = fused, plus decomposed LayerNorm chains fused "
                          "as ONNX Runtime's graph optimizations do."),
        click.option("--backend", type=click.Choice(["emulate", "ort-cuda", "trt"]), default="emulate", show_default=True),
        click.option("--graph-opt", type=click.Choice(["none", "basic", "all"]), default="none", show_default=True,
                     help="ONNX Runtime graph optimizations for --backend ort-cuda (fusions change the numbers)."),
        click.option("--trt-typing", type=click.Choice(["weak", "strong"]), default="strong", show_default=True,
                     help="--backend trt on TensorRT <= 10: weakly typed build with layer precisions, or the mixed ONNX."),
        click.option("--memory-budget", default=8.0, show_default=True, type=float,
                     help="GB of activations (reference + candidate) one probe pass may compute; beyond it, several passes."),
    ])


def task_options(fn):
    return _stack(fn, [
        click.option("--task", "task_name", help="Task metric: ctc, whisper, or package.module:factory."),
        click.option("--data", "data", type=click.Path(), help="Dataset: NeMo manifest, or folder of audio + .txt."),
        click.option("--limit", type=int, help="Use the first N clips of the dataset."),
        click.option("--label-free", is_flag=True, help="Reference transcript = the FP32 model's output (drift WER)."),
        click.option("--decoder", type=click.Path(dir_okay=False), help="whisper: decoder ONNX (default: decoder.onnx beside the model)."),
        click.option("--tokenizer", type=click.Path(dir_okay=False), help="whisper: tokenizer.json (default: beside the model)."),
        click.option("--vocab", type=click.Path(dir_okay=False), help="ctc: vocab.json (token -> id) or one token per line."),
        click.option("--blank", default=0, show_default=True, help="ctc: blank id."),
        click.option("--delimiter", default="|", show_default=True, help="ctc: word delimiter token."),
        click.option("--normalize-audio/--no-normalize-audio", default=True, show_default=True, help="ctc: zero-mean unit-variance waveform."),
        click.option("--numbers", is_flag=True, help="WER: spell out digits before scoring."),
        click.option("--on-bad-audio", type=click.Choice(["skip", "fail"]), default="fail", show_default=True),
        click.option("--test", "test_part", type=click.Choice(["encoder", "decoder", "both"]), default="encoder", show_default=True,
                     help="whisper: which part runs in reduced precision."),
    ])


def backend_from(opts: dict):
    from .backends import get_backend

    name = opts["backend"]
    if name == "emulate":
        return get_backend(name, profile=opts["profile"], memory_budget_gb=opts["memory_budget"])
    if name == "ort-cuda":
        return get_backend(name, graph_opt=opts["graph_opt"])
    return get_backend(name, typing=opts["trt_typing"])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="precdoctor")
def main():
    """Find and fix reduced-precision failures of ONNX models (FP16/BF16, TensorRT)."""


@main.command()
@model_options
@plan_options
@engine_options
@click.option("--rtol", default=0.05, show_default=True, help="An output diverges past this relative L2 error.")
@click.option("--atol", default=1.0, show_default=True, help="A position of an output is off past this max abs error.")
@click.option("--top", default=8, show_default=True, help="Offending tensors to list.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the full per-tensor results here.")
@guarded
def compare(model, inputs, shapes, seed, rtol, atol, top, json_out, **opts):
    """Run FP32 and reduced precision side by side and report where they part."""
    from . import workflow

    result = workflow.compare(model, inputs, shapes, seed, opts, rtol, atol, backend_from(opts))
    click.echo(workflow.compare_summary(result, top))
    write_json(json_out, result)
    sys.exit(0 if result["verdict"] == "ok" else 1)


@main.command()
@model_options
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
@guarded
def scan(model, inputs, shapes, seed, json_out):
    """FP32-only risk report: ranges past FP16/BF16, vanishing epsilons, decomposed norms."""
    from . import scan as scanner
    from . import workflow

    graph, samples = workflow.load(model, inputs, shapes, seed)
    result = scanner.scan(graph, samples)
    click.echo(scanner.summary(result))
    write_json(json_out, result)


@main.command()
@model_options
@click.option("--precision", type=click.Choice(["fp16", "bf16"]), default="fp16", show_default=True)
@click.option("--accept", "accept", multiple=True,
              help="Acceptance criterion, repeatable: finite, max-abs<=X, rel-l2<=X, cosine>=X, argmax-agreement>=X, "
                   "[OUTPUT:]..., wer<=+X (with --task/--data). Default: finite, rel-l2<=0.05.")
@click.option("--budget", default=64, show_default=True, help="Most evaluations (plans run) the search may spend.")
@engine_options
@click.option("--out", "outdir", required=True, type=click.Path(file_okay=False), help="Folder for pins.json, flags, mixed ONNX, run.json, report.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write run.json here.")
@click.option("--no-baselines", is_flag=True, help="Skip the range-rule and prefix-bisection baselines.")
@click.option("--no-report", is_flag=True, help="Do not write OUT/index.html.")
@click.option("--quiet", is_flag=True, help="No progress on the terminal.")
@task_options
@guarded
def bisect(model, inputs, shapes, seed, precision, accept, budget, outdir, json_out, no_baselines, no_report, quiet, **opts):
    """Find the fewest nodes to keep in FP32, prove it, and write the artifacts to ship."""
    from . import bisect as job
    from . import workflow

    task, samples_spec = workflow.task_setup(model, inputs, shapes, seed, opts, precision)
    result = job.run(model, samples_spec, backend_from(opts), outdir,
                     job.BisectOptions(precision, tuple(accept), budget, quiet, not no_baselines, task=task))
    if not no_report:
        from .report import render_to

        result["report"] = str(render_to(result, Path(outdir) / "index.html"))
    click.echo(workflow.bisect_summary(result))
    write_json(json_out, result)
    sys.exit(1 if result["verdict"] == "unfixed" else 0)


@main.command(name="wer")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp16", show_default=True,
              help="Reduced precision to compare with FP32 (fp32: the reference row only).")
@click.option("--pins", "pin_files", multiple=True, help="pins.json: adds a row for the pinned plan.")
@engine_options
@click.option("--other/--no-other", default=False, show_default=True, help="Also the other reduced format (bf16 next to fp16).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
@task_options
@guarded
def wer_cmd(model, precision, pin_files, other, json_out, **opts):
    """WER/CER per configuration (FP32, naive FP16/BF16, pinned) on a dataset, worst utterances side by side."""
    from . import workflow

    if not opts.get("task_name"):
        raise BadInput("wer needs --task (ctc, whisper or package.module:factory) and --data")
    result = workflow.wer_table(model, precision, pin_files, opts, backend_from(opts), other)
    click.echo(workflow.wer_summary(result))
    write_json(json_out, result)


@main.command()
@click.argument("run_json", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), required=True, help="HTML file to write.")
@guarded
def report(run_json, out):
    """Render a run JSON (bisect, compare or wer) as one self-contained HTML file."""
    from .report import render_file

    click.echo(f"wrote {render_file(run_json, out)}")


@main.command()
@click.argument("pins_file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["trtexec", "polygraphy", "autocast", "mixed-onnx"]), required=True)
@click.option("--model", type=click.Path(dir_okay=False), help="The FP32 model (default: the one pins.json names).")
@click.option("--out", "outdir", type=click.Path(file_okay=False), default=".", show_default=True, help="Folder to write into.")
@guarded
def pins(pins_file, fmt, model, outdir):
    """Re-emit an artifact from a saved pins.json."""
    from . import workflow

    click.echo(workflow.reemit(pins_file, fmt, model, outdir))


@main.command(name="check-engine")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--pins", "pins_file", required=True, type=click.Path(dir_okay=False), help="pins.json of the plan the engine was built with.")
@click.option("--layer-info", required=True, type=click.Path(dir_okay=False),
              help="TensorRT layer information JSON (trtexec --profilingVerbosity=detailed --exportLayerInfo=FILE).")
@guarded
def check_engine(model, pins_file, layer_info):
    """Check that a TensorRT engine honoured the FP32 pins (pins inside FP16 fused layers are not)."""
    from .backends.trt_layers import check_pins, load_layer_info
    from .graph import load_model, view
    from .plan import load_pins

    graph = view(load_model(model))
    pins = load_pins(pins_file).get("pins", [])
    r = check_pins(load_layer_info(layer_info), pins, [n.name for n in graph.nodes])
    for p in r["honoured"]:
        click.echo(f"honoured      {p}  ({', '.join(r['layers_of'][p])})")
    for bad in r["not_honoured"]:
        click.echo(f"NOT HONOURED  {bad['pin']}  runs in low-precision layer(s): {', '.join(bad['layers'])}")
    for p in r["unresolved"]:
        click.echo(f"unresolved    {p}  (no engine layer names it; it may have been folded away)")
    sys.exit(1 if r["not_honoured"] else 0)


if __name__ == "__main__":
    main()
