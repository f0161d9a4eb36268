"""``precdoctor verify``: a bisect's shipped plan, run on an engine, against the FP32 references it saved.

``--backend ort-cuda`` runs ``model.mixed.onnx`` itself, as shipped, on ONNX
Runtime's CUDA kernels (TF32 as the plan allows, graph optimizations as a
default session has them). ``--backend emulate`` is its CPU stand-in: the
emulation of the plan pins.json names, under the run's target, with the
shipped file's constant conversion and TF32 choice. Either is judged by the
output criteria the plan was verified with, on every saved sample (exit 0 all
pass, 1 one fails); the criteria outputs cannot show (a task metric,
finite-inside) are listed, not silently dropped. Every plan the folder's
manifest names is checked, the verdict's first (the rewritten model, when a
rewrite is the verdict, then its alternative, the pins); the run passes when
each does.
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
from ..runs import PlanVerdict, SampleVerdict, VerifyRun
from ..verification.references import FOLDER, CheckedPlan, Manifest, read_manifest, read_sample
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


def _ort_cuda(p: VerifyParams, manifest: Manifest, checked: CheckedPlan):
    """The shipped mixed ONNX on CUDA: (runner, what ran)."""
    import onnx

    from ..backends import ort
    from ..backends.ort_cuda import cuda_providers

    path = Path(p.folder) / checked.mixed
    if not path.is_file():
        raise BadInput(f"{path} not found: verify runs the mixed ONNX a bisect wrote")
    providers = cuda_providers(tf32=checked.tf32)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise BadInput(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    sessions = ort.ShapedSessions(model, providers=providers, graph_opt=p.graph_opt)
    import onnxruntime

    info = EngineInfo("ort-cuda", f"onnxruntime-gpu {onnxruntime.__version__}, CUDA kernels, {checked.mixed}", graph_opt=p.graph_opt,
                      target=manifest.target, constants=manifest.constants, tf32=checked.tf32)
    return (lambda feed: ort.run(sessions(feed), feed)), info


def _emulated(p: VerifyParams, manifest: Manifest, checked: CheckedPlan):
    """The CPU stand-in: the plan's emulation under the run's target, converting constants as the mixed ONNX does. The
    pins: the model and plan pins.json names now; a rewrite: the rewritten model in the folder, with its pins."""
    from ..graph import open_model

    if checked.fix == "rewrite":
        model = Path(p.folder) / checked.model
        if not model.is_file():
            raise BadInput(f"{model} not found: verify --backend emulate emulates the rewritten model a bisect wrote")
        graph, plan = open_model(model), Plan(manifest.precision, frozenset(checked.pins))
    else:
        pins_file = Path(p.folder) / "pins.json"
        saved = read_pins(pins_file)
        model = saved.model_path(pins_file)
        if model is None or not model.is_file():
            raise BadInput(f"{pins_file} names no model file that exists ({saved.model!r}); verify --backend emulate emulates it")
        graph = open_model(model)
        plan = Plan(saved.precision, frozenset(saved.pins) | frozenset(saved.forced))
    backend = EngineParams(profile=manifest.profile, recurrent=manifest.recurrent, target=manifest.target,
                           constants=manifest.constants, tf32=checked.tf32).make()
    return backend.runner(graph, plan), backend.info()


def _check(p: VerifyParams, manifest: Manifest, criteria, checked: CheckedPlan):
    """Every saved sample through one plan: (per-sample verdicts, what ran)."""
    runner, info = _ort_cuda(p, manifest, checked) if p.backend == "ort-cuda" else _emulated(p, manifest, checked)
    verdicts = []
    for k, s in enumerate(manifest.samples):
        feed, ref = read_sample(Path(p.folder) / FOLDER, s)
        out = runner(feed)
        missing = [o for o in ref if o not in out]
        if missing:
            raise BadInput(f"the model run has no output {missing[0]!r}, which {FOLDER}/ holds a reference for")
        v = acc.judge_outputs(criteria, [(ref, out)], list(ref))
        log.info(f"{checked.title()}: sample {k}: {'PASS' if v.passed else 'FAIL'}")
        verdicts.append(SampleVerdict(k, v.passed, v.measures, v.failed))
    return verdicts, info


def run(p: VerifyParams) -> VerifyRun:
    p.check()
    clock = Clock()
    manifest = read_manifest(Path(p.folder) / FOLDER)
    criteria = acc.parse(manifest.accept)
    clock.lap("load")
    # a folder written before the manifest named its plans holds the pins alone
    plans = manifest.plans or [CheckedPlan("verdict", "pins", "", MIXED, manifest.pins, manifest.tf32)]
    pins_file = Path(p.folder) / "pins.json"
    checked, info = [], None
    for plan in plans:
        verdicts, engine = _check(p, manifest, criteria, plan)
        info = info or engine
        pins = sorted(read_pins(pins_file).pins) if plan.fix == "pins" and pins_file.is_file() else plan.pins  # the folder's now
        checked.append(PlanVerdict(plan.role, plan.fix, str(Path(p.folder) / plan.mixed), pins, verdicts,
                                   all(v.passed for v in verdicts)))
    clock.lap("verify")
    lead = checked[0]
    result = VerifyRun(model=lead.model, folder=str(p.folder), precision=manifest.precision, pins=lead.pins,
                       target=manifest.target, engine=info, accept=manifest.accept, samples=lead.samples,
                       passed=all(c.passed for c in checked), not_checked=manifest.not_checked, timing=clock.timing(),
                       versions=versions(), plans=checked)
    if p.json_out:
        dump_json(p.json_out, result)
    return result
