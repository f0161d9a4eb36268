"""precdoctor: find and fix reduced-precision failures of ONNX models on their way to TensorRT.

The same pipelines as the command line, for notebooks and CI scripts::

    import precdoctor
    run = precdoctor.compare("model.onnx", inputs=["sample.npz"], precision="fp16")
    print(run.verdict, run.comparison.origin)
    fix = precdoctor.bisect("model.onnx", out="fix", inputs=[{"x": x}], accept=["max-abs<=1"])
    print(fix.verdict, fix.pins)

Each returns a typed run record (``CompareRun``, ``ScanRun``, ``BisectRun``,
``WerRun``, ``VerifyRun``) with ``to_json()``. Progress: ``progress=True`` (default) draws tqdm bars where
someone watches (a widget in a notebook, text on a terminal's stderr, nothing in a pipe), ``progress=False``
nothing, or a callable receives each ``precdoctor.core.progress.Event`` (stage, done, total, unit, note);
step-by-step lines go to the ``precdoctor`` logger. Bad input raises ``BadInput`` with a one-line message,
before any work: the arguments are checked as the command line checks its options (arguments.py), then each
command's typed parameters (the same the command line builds) check their values.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

__version__ = "0.2.0"

from .core import progress as _progress  # noqa: E402  (after __version__, as every import here)
from .backends import EngineParams  # noqa: E402  (after __version__, which the pipelines read)
from .analysis.comparison import Tolerance  # noqa: E402
from .core.errors import BadInput  # noqa: E402
from .core.limits import DEFAULT_BUDGET  # noqa: E402
from .runs import BisectRun, CompareRun, ScanRun, VerifyRun, WerRun, read_run  # noqa: E402
from .tasks.registry import TaskParams  # noqa: E402

__all__ = [
    "BadInput", "BisectRun", "CompareRun", "EngineParams", "ScanRun", "TaskParams", "Tolerance", "VerifyRun", "WerRun",
    "bisect", "compare", "read_run", "scan", "verify", "wer",
]


PathLike = str | os.PathLike
Inputs = PathLike | dict | Sequence[PathLike | dict] | None  # .npz / Polygraphy JSON paths, or feed dicts
Shapes = dict | str | Sequence[str] | None  # {input name: [d0, d1, ...]} or "NAME:[D,...]" strings
Texts = str | Sequence[str] | None  # a lone string is one item
Progress = bool | Callable[[_progress.Event], None]  # bars where someone watches, none, or each progress.Event


def _inputs(inputs: Inputs, input_shapes: Shapes, seed: Any):
    from .interface import arguments as a
    from .planning.inputs import InputSpec

    files, arrays = a.inputs(inputs)
    return InputSpec(files, arrays, a.input_shapes(input_shapes), a.integer(seed, "seed", 0))


def _engine(engine: Any) -> EngineParams:
    from .interface import arguments as a

    return a.instance(engine, "engine", EngineParams, "e.g. EngineParams(backend='emulate', target='trt-weak')") or EngineParams()


def _task(task: Any, optional: bool = True) -> TaskParams | None:
    from .interface import arguments as a

    return a.instance(task, "task", TaskParams, "e.g. TaskParams('whisper', 'clips/')", optional)


def compare(model: PathLike, *, precision: str = "fp16", inputs: Inputs = (), input_shapes: Shapes = None, seed: int = 0,
            pins: Texts = (), pin_files: Sequence[PathLike] | PathLike | None = (), engine: EngineParams | None = None,
            tolerance: Tolerance | None = None, json_out: PathLike | None = None, allow_internal_nonfinite: bool = False,
            task: TaskParams | None = None, report: PathLike | None = None, progress: Progress = True) -> CompareRun:
    """FP32 and the plan side by side, every float tensor compared (``precdoctor compare``).

    Args:
        model: the FP32 ONNX model's path.
        precision: ``fp16`` or ``bf16``.
        inputs: .npz / Polygraphy JSON paths or feed dicts {input name: array}; a lone one is one sample.
        input_shapes: shapes for seeded random data when no inputs are given: {name: [d0, ...]} or ``NAME:[D,...]``.
        seed: seed of the random data (0 or more).
        pins: pin selectors (NAME, glob:PAT, re:REGEX, op:OpType); a lone string is one selector.
        pin_files: pins.json files to apply.
        engine: which engine computes the reduced precision, and how (default: CPU emulation of the default target).
        tolerance: when an output counts as diverged (default: limits.DEFAULT_REL_L2, limits.DEFAULT_ATOL).
        json_out: also write the run record here.
        allow_internal_nonfinite: new Inf/NaN inside the graph that the outputs do not show is no failure.
        task: a ``TaskParams``: the samples are the task's proxy clips, decoded against FP32 where the task decodes.
        report: also write the HTML report here.
        progress: ``True`` bars where someone watches, ``False`` none, or a callable receiving each ``progress.Event``.

    Returns:
        The ``CompareRun`` (``.verdict``, ``.comparison``).
    """
    from .interface import arguments as a
    from .pipelines.compare import CompareParams, run

    params = CompareParams(
        a.path(model, "model"), precision=a.text(precision, "precision"), inputs=_inputs(inputs, input_shapes, seed),
        pins=a.texts(pins, "pins"), pin_files=a.paths(pin_files, "pin_files"), engine=_engine(engine),
        tolerance=a.instance(tolerance, "tolerance", Tolerance, "e.g. Tolerance(rel_l2=0.05, atol=1.0)") or Tolerance(),
        json_out=a.path(json_out, "json_out", optional=True), allow_internal_nonfinite=a.flag(allow_internal_nonfinite, "allow_internal_nonfinite"),
        task=_task(task), report_out=a.path(report, "report", optional=True))
    with _progress.reporting(_progress.for_api(progress)):
        return run(params)


def scan(model: PathLike, *, inputs: Inputs = (), input_shapes: Shapes = None, seed: int = 0, json_out: PathLike | None = None,
         target: str | None = None, progress: Progress = True) -> ScanRun:
    """FP32-only risk report (``precdoctor scan``).

    Args:
        model: the FP32 ONNX model's path.
        inputs, input_shapes, seed: the samples, as for ``compare``.
        json_out: also write the run record here.
        target: the engine the model is for (targets.py; default: targets.DEFAULT_TARGET): how it converts constants
            decides whether a tiny one is a risk.
        progress: as for ``compare``.

    Returns:
        The ``ScanRun`` (``.risks``, ``.ranges``).
    """
    from .interface import arguments as a
    from .pipelines.scan import ScanParams, run
    from .numerics.targets import DEFAULT_TARGET

    params = ScanParams(a.path(model, "model"), _inputs(inputs, input_shapes, seed), a.path(json_out, "json_out", optional=True),
                        a.text(target, "target", optional=True) or DEFAULT_TARGET)
    with _progress.reporting(_progress.for_api(progress)):
        return run(params)


def bisect(model: PathLike, out: PathLike, *, precision: str = "fp16", inputs: Inputs = (), input_shapes: Shapes = None,
           seed: int = 0, accept: Texts = (), budget: int = DEFAULT_BUDGET, engine: EngineParams | None = None,
           task: TaskParams | None = None, baselines: bool = True, report: bool = True, json_out: PathLike | None = None,
           allow_internal_nonfinite: bool = False, fix: str = "pins", check: str | None = None, workers: int = 1,
           ray_address: str | None = None, worker_cpus: int | None = None, progress: Progress = True) -> BisectRun:
    """The fewest FP32 pins, verified, with artifacts written to ``out`` (``precdoctor bisect``).

    Args:
        model: the FP32 ONNX model's path (with ``task`` and a decoder under test: the encoder's).
        out: the folder for pins.json, the commands, the mixed ONNX, run.json and the report.
        precision: ``fp16`` or ``bf16``.
        inputs, input_shapes, seed: the samples, as for ``compare`` (or ``task``'s clips).
        accept: acceptance criteria (``finite``, ``rel-l2<=X``, ``wer<=+X``, ...); a lone string is one criterion.
            Default: limits.DEFAULT_ACCEPT.
        budget: the most evaluations (plans run) the search may spend (1 or more).
        engine: which engine computes the reduced precision, and how.
        task: a ``TaskParams``: the task metric confirms the plan.
        baselines: also run the range-rule and prefix-bisection baselines.
        report: write ``out/index.html``.
        json_out: also write run.json here.
        allow_internal_nonfinite: accept a plan whose outputs pass while new Inf/NaN is born inside.
        fix: ``pins``, ``rewrite`` (equivalent FP16/BF16-safe subgraphs instead of pins) or ``auto`` (rewrites, pins for
            the rest).
        check: a command that judges each confirmed plan (its model.mixed.onnx and pins.json appended, or in place of
            ``{model}`` and ``{pins}``; exit 0 = pass; external.py).
        workers: Ray actors evaluating plans, the samples split across them (distributed.py; the ``scale`` extra):
            the same results as one.
        ray_address: a running Ray cluster for the workers (default: one started on this host).
        worker_cpus: CPU slots, and ONNX Runtime threads, per CPU worker (default: this host's cores shared out).
        progress: as for ``compare``.

    Returns:
        The ``BisectRun`` (``.verdict``, ``.pins``, ``.artifacts``), as ``out/run.json`` holds it.
    """
    from .interface import arguments as a
    from .backends.distributed import ScaleParams
    from .pipelines.bisect import BisectParams, run

    params = BisectParams(
        a.path(model, "model"), a.path(out, "out"), precision=a.text(precision, "precision"),
        inputs=_inputs(inputs, input_shapes, seed), accept=a.texts(accept, "accept"), budget=a.integer(budget, "budget", 1),
        engine=_engine(engine), task=_task(task), baselines=a.flag(baselines, "baselines"), report=a.flag(report, "report"),
        json_out=a.path(json_out, "json_out", optional=True),
        allow_internal_nonfinite=a.flag(allow_internal_nonfinite, "allow_internal_nonfinite"), fix=a.text(fix, "fix"),
        check_cmd=a.text(check, "check", optional=True),
        scale=ScaleParams(a.integer(workers, "workers", 1), a.text(ray_address, "ray_address", optional=True),
                          None if worker_cpus is None else a.integer(worker_cpus, "worker_cpus", 1)))
    with _progress.reporting(_progress.for_api(progress)):
        return run(params)


def verify(folder: PathLike, *, backend: str = "ort-cuda", graph_opt: str = "all", json_out: PathLike | None = None,
           progress: Progress = True) -> VerifyRun:
    """A bisect's shipped plan (its ``out`` folder) against the FP32 references it saved (``precdoctor verify``).

    Args:
        folder: the bisect's ``out`` folder.
        backend: ``ort-cuda`` (model.mixed.onnx on onnxruntime-gpu) or ``emulate`` (its CPU stand-in).
        graph_opt: ONNX Runtime graph optimizations (``all``: a default session's).
        json_out: also write the verdict per sample here.
        progress: as for ``compare``.

    Returns:
        The ``VerifyRun`` (``.passed``).
    """
    from .interface import arguments as a
    from .pipelines.verify import VerifyParams, run

    params = VerifyParams(a.path(folder, "folder"), a.text(backend, "backend"), a.text(graph_opt, "graph_opt"),
                          a.path(json_out, "json_out", optional=True))
    with _progress.reporting(_progress.for_api(progress)):
        return run(params)


def wer(model: PathLike, task: TaskParams, *, precision: str = "fp16", pins: Texts = (),
        pin_files: Sequence[PathLike] | PathLike | None = (), other: bool = False, engine: EngineParams | None = None,
        json_out: PathLike | None = None, progress: Progress = True) -> WerRun:
    """WER/CER per configuration on the task's dataset (``precdoctor wer``).

    Args:
        model: the FP32 ONNX model's path.
        task: a ``TaskParams`` (the task and its dataset).
        precision: ``fp16``, ``bf16``, or ``fp32`` (the reference row only).
        pins, pin_files: a pinned configuration's row, as for ``compare``.
        other: also the other reduced format's row.
        engine: which engine computes the reduced precision, and how.
        json_out: also write the WER table here.
        progress: as for ``compare``.

    Returns:
        The ``WerRun`` (``.rows``).
    """
    from .interface import arguments as a
    from .pipelines.wer_table import WerParams, run

    params = WerParams(a.path(model, "model"), _task(task, optional=False), precision=a.text(precision, "precision"),
                       pins=a.texts(pins, "pins"), pin_files=a.paths(pin_files, "pin_files"), other=a.flag(other, "other"),
                       engine=_engine(engine), json_out=a.path(json_out, "json_out", optional=True))
    with _progress.reporting(_progress.for_api(progress)):
        return run(params)
