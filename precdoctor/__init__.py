"""precdoctor: find and fix reduced-precision failures of ONNX models on their way to TensorRT.

The same pipelines as the command line, for notebooks and CI scripts::

    import precdoctor
    run = precdoctor.compare("model.onnx", inputs=["sample.npz"], precision="fp16")
    print(run.verdict, run.comparison.origin)
    fix = precdoctor.bisect("model.onnx", out="fix", inputs=[{"x": x}], accept=["max-abs<=1"])
    print(fix.verdict, fix.pins)

Each returns a typed run record (``CompareRun``, ``ScanRun``, ``BisectRun``,
``WerRun``, ``VerifyRun``) with ``to_json()``; progress goes to the ``precdoctor`` logger.
Bad input raises ``BadInput`` with a one-line message.
"""
from __future__ import annotations

__version__ = "0.2.0"

from .backends import EngineParams  # noqa: E402  (after __version__, which the pipelines read)
from .comparison import Tolerance  # noqa: E402
from .errors import BadInput  # noqa: E402
from .runs import BisectRun, CompareRun, ScanRun, VerifyRun, WerRun, read_run  # noqa: E402
from .tasks.registry import TaskParams  # noqa: E402

__all__ = [
    "BadInput", "BisectRun", "CompareRun", "EngineParams", "ScanRun", "TaskParams", "Tolerance", "VerifyRun", "WerRun",
    "bisect", "compare", "read_run", "scan", "verify", "wer",
]


def _inputs(inputs, input_shapes, seed):
    from .inputs import InputSpec

    files = tuple(str(i) for i in inputs if not isinstance(i, dict))
    arrays = tuple(i for i in inputs if isinstance(i, dict))
    if isinstance(input_shapes, dict):
        input_shapes = [f"{k}:[{','.join(str(int(d)) for d in v)}]" for k, v in input_shapes.items()]
    return InputSpec(files, arrays, tuple(input_shapes or ()), seed)


def compare(model, *, precision: str = "fp16", inputs=(), input_shapes=None, seed: int = 0, pins=(), pin_files=(),
            engine=None, tolerance=None, json_out=None, allow_internal_nonfinite: bool = False, task=None):
    """FP32 and the plan side by side, every float tensor compared. ``inputs``: .npz/Polygraphy JSON paths or feed dicts;
    or ``task`` (a ``TaskParams``): the samples are the task's proxy clips, decoded against FP32 where the task decodes."""
    from .pipelines.compare import CompareParams, run

    return run(CompareParams(str(model), precision, _inputs(inputs, input_shapes, seed), tuple(pins), tuple(pin_files),
                             engine or EngineParams(), tolerance or Tolerance(), json_out, allow_internal_nonfinite, task))


def scan(model, *, inputs=(), input_shapes=None, seed: int = 0, json_out=None, target: str | None = None):
    """FP32-only risk report; ``target`` (targets.py) decides how constants are judged."""
    from .pipelines.scan import ScanParams, run
    from .targets import DEFAULT_TARGET

    return run(ScanParams(str(model), _inputs(inputs, input_shapes, seed), json_out, target or DEFAULT_TARGET))


def bisect(model, out, *, precision: str = "fp16", inputs=(), input_shapes=None, seed: int = 0, accept=(), budget: int = 64,
           engine=None, task=None, baselines: bool = True, report: bool = True, json_out=None,
           allow_internal_nonfinite: bool = False, fix: str = "pins", workers: int = 1, ray_address: str | None = None):
    """The fewest FP32 pins, verified, with artifacts written to ``out``. ``task``: a ``TaskParams``. ``fix``: pins,
    rewrite (equivalent FP16/BF16-safe subgraphs instead of pins) or auto (rewrites, pins for the rest). ``workers``,
    ``ray_address``: plans evaluated on Ray actors (distributed.py; the ``scale`` extra), with the same results."""
    from .distributed import ScaleParams
    from .pipelines.bisect import BisectParams, run

    return run(BisectParams(str(model), str(out), precision, _inputs(inputs, input_shapes, seed), tuple(accept), budget,
                            engine or EngineParams(), task, baselines, report, json_out=json_out,
                            allow_internal_nonfinite=allow_internal_nonfinite, fix=fix, scale=ScaleParams(workers, ray_address)))


def verify(folder, *, backend: str = "ort-cuda", graph_opt: str = "all", json_out=None):
    """A bisect's shipped plan (its --out folder) against the FP32 references it saved; ``.passed``."""
    from .pipelines.verify import VerifyParams, run

    return run(VerifyParams(str(folder), backend, graph_opt, json_out))


def wer(model, task, *, precision: str = "fp16", pins=(), pin_files=(), other: bool = False, engine=None, json_out=None):
    """WER/CER per configuration on the task's dataset. ``task``: a ``TaskParams``."""
    from .pipelines.wer import WerParams, run

    return run(WerParams(str(model), task, precision, tuple(pins), tuple(pin_files), other, engine or EngineParams(), json_out))
