"""``precdoctor verify``: a bisect's shipped plan, run on an engine, against the FP32 references it saved.

``--backend ort-cuda`` runs ``model.mixed.onnx`` itself, as shipped, on ONNX
Runtime's CUDA kernels (TF32 as the plan allows, graph optimizations as a
default session has them). ``--backend emulate`` is its CPU stand-in: the
emulation of the plan pins.json names, under the run's target, with the
shipped file's constant conversion and TF32 choice. Either is judged by the
output criteria the plan was verified with, on every saved sample (exit 0 all
pass, 1 one fails); the criteria outputs cannot show (a task metric,
finite-inside) are listed, not silently dropped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .. import acceptance as acc
from ..backends import GRAPH_OPT_LEVELS, VERIFY_BACKENDS, EngineInfo, EngineParams
from ..destinations import check_output_file
from ..errors import BadInput
from ..files import dump_json
from ..pinsfile import read_pins
from ..plan import Plan
from ..runs import SampleVerdict, VerifyRun
from ..verification.references import FOLDER, Manifest, read_manifest, read_sample
from .common import Clock, versions

log = logging.getLogger("precdoctor")
MIXED = "model.mixed.onnx"


@dataclass(frozen=True)
class VerifyParams:
    folder: str
    backend: str = "ort-cuda"
    graph_opt: str = "all"  # ONNX Runtime's own default: what a user's session does
    json_out: str | None = None

    def check(self) -> None:
        if self.backend not in VERIFY_BACKENDS:
            raise BadInput(f"unknown verify backend {self.backend!r}; expected one of {', '.join(VERIFY_BACKENDS)}")
        if self.graph_opt not in GRAPH_OPT_LEVELS:
            raise BadInput(f"unknown graph optimization level {self.graph_opt!r}; expected one of {', '.join(GRAPH_OPT_LEVELS)}")
        if not Path(self.folder).is_dir():
            raise BadInput(f"{self.folder} is not a folder (give the --out folder of a bisect)")
        check_output_file(self.json_out, keep=())


def _ort_cuda(p: VerifyParams, manifest: Manifest):
    """The shipped mixed ONNX on CUDA: (runner, what ran)."""
    import onnx

    from ..backends import ort
    from ..backends.ort_cuda import cuda_providers

    path = Path(p.folder) / MIXED
    if not path.is_file():
        raise BadInput(f"{path} not found: verify runs the mixed ONNX a bisect wrote")
    providers = cuda_providers(tf32=manifest.tf32)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise BadInput(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    sessions = ort.ShapedSessions(model, providers=providers, graph_opt=p.graph_opt)
    import onnxruntime

    info = EngineInfo("ort-cuda", f"onnxruntime-gpu {onnxruntime.__version__}, CUDA kernels, {MIXED}", graph_opt=p.graph_opt,
                      target=manifest.target, constants=manifest.constants, tf32=manifest.tf32)
    return (lambda feed: ort.run(sessions(feed), feed)), info


def _emulated(p: VerifyParams, manifest: Manifest):
    """The CPU stand-in: the plan's emulation under the run's target, converting constants as the mixed ONNX does."""
    from ..graph import open_model

    pins_file = Path(p.folder) / "pins.json"
    saved = read_pins(pins_file)
    model = saved.model_path(pins_file)
    if model is None or not model.is_file():
        raise BadInput(f"{pins_file} names no model file that exists ({saved.model!r}); verify --backend emulate emulates it")
    graph = open_model(model)
    plan = Plan(saved.precision, frozenset(saved.pins) | frozenset(saved.forced))
    backend = EngineParams(profile=manifest.profile, recurrent=manifest.recurrent, target=manifest.target,
                           constants=manifest.constants, tf32=manifest.tf32).make()
    return backend.runner(graph, plan), backend.info()


def run(p: VerifyParams) -> VerifyRun:
    p.check()
    clock = Clock()
    manifest = read_manifest(Path(p.folder) / FOLDER)
    criteria = acc.parse(manifest.accept)
    runner, info = _ort_cuda(p, manifest) if p.backend == "ort-cuda" else _emulated(p, manifest)
    clock.lap("load")
    verdicts = []
    for k, s in enumerate(manifest.samples):
        feed, ref = read_sample(Path(p.folder) / FOLDER, s)
        out = runner(feed)
        missing = [o for o in ref if o not in out]
        if missing:
            raise BadInput(f"the model run has no output {missing[0]!r}, which {FOLDER}/ holds a reference for")
        v = acc.judge_outputs(criteria, [(ref, out)], list(ref))
        log.info(f"sample {k}: {'PASS' if v.passed else 'FAIL'}")
        verdicts.append(SampleVerdict(k, v.passed, v.measures, v.failed))
    clock.lap("verify")
    pins_file = Path(p.folder) / "pins.json"
    pins = sorted(read_pins(pins_file).pins) if pins_file.is_file() else manifest.pins  # the plan the folder holds now
    result = VerifyRun(model=str(Path(p.folder) / MIXED), folder=str(p.folder), precision=manifest.precision, pins=pins,
                       target=manifest.target, engine=info, accept=manifest.accept, samples=verdicts,
                       passed=all(v.passed for v in verdicts), not_checked=manifest.not_checked, timing=clock.timing(),
                       versions=versions())
    if p.json_out:
        dump_json(p.json_out, result)
    return result
