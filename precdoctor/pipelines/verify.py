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

The folder is input, not trusted: every file read from it must resolve inside
it (a ``reference/`` or a file symlinked out is refused), ``--json`` may not
name any file the command reads (pins.json, the manifest, a reference file, the
models), and a pin naming no node of the model refuses the pins file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..analysis import acceptance as acc
from ..backends import GRAPH_OPT_LEVELS, VERIFY_BACKENDS, EngineInfo, EngineParams
from ..core.destinations import check_output_file
from ..core.errors import BadInput
from ..core.files import dump_json, inside_folder
from ..planning.pinsfile import read_pins
from ..planning.plan import Plan
from ..runs import PlanVerdict, SampleVerdict, VerifyRun
from ..ship.verification.references import FOLDER, MANIFEST, CheckedPlan, Manifest, read_manifest, read_sample
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
        check_output_file(self.json_out, keep=())  # unwritable places; what it must not replace: _protect, once read

    def file(self, name: str, what: str) -> Path:
        """A file of the run folder, refused when it resolves outside it."""
        return inside_folder(self.folder, name, what)


def _plans(manifest: Manifest) -> list[CheckedPlan]:
    """The plans to check, the verdict's first; a folder written before the manifest named its plans holds the pins alone."""
    return manifest.plans or [CheckedPlan("verdict", "pins", "", MIXED, manifest.pins, manifest.tf32)]


def _protect(p: VerifyParams, manifest: Manifest, models: list[Path]) -> None:
    """Refuse, before any run, a --json naming one of the files this command reads."""
    ref = Path(p.folder) / FOLDER
    reads = [p.file("pins.json", "pins file"), ref / MANIFEST, *models, *(p.file(c.mixed, "mixed ONNX") for c in _plans(manifest)),
             *(ref / f for f in manifest.files())]
    check_output_file(p.json_out, keep=tuple(reads))


def _plan_nodes(saved, pins_file: Path, names, model: str) -> frozenset:
    """The nodes pins.json pins on a model with nodes ``names``; one naming none of them refuses the file."""
    missing = next((n for n in [*saved.pins, *saved.forced] if n not in names), None)
    if missing is not None:
        raise BadInput(f"{pins_file} pins node {missing!r}, which {model} does not have")
    return frozenset(saved.pins) | frozenset(saved.forced)


def _ort_cuda(p: VerifyParams, manifest: Manifest, checked: CheckedPlan):
    """The shipped mixed ONNX on CUDA: (runner, what ran)."""
    import onnx

    from ..backends import ort
    from ..backends.ort_cuda import cuda_providers

    path = p.file(checked.mixed, "mixed ONNX")
    if not path.is_file():
        raise BadInput(f"{path} not found: verify runs the mixed ONNX a bisect wrote")
    providers = cuda_providers(tf32=checked.tf32)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises assorted types for a damaged file
        raise BadInput(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    pins_file = p.file("pins.json", "pins file")
    if checked.fix == "pins" and pins_file.is_file():
        from ..graph.bodies import walk_graphs

        _plan_nodes(read_pins(pins_file), pins_file, {n.name for g in walk_graphs(model.graph) for n in g.node}, str(path))
    sessions = ort.ShapedSessions(model, providers=providers, graph_opt=p.graph_opt)
    import onnxruntime

    info = EngineInfo("ort-cuda", f"onnxruntime-gpu {onnxruntime.__version__}, CUDA kernels, {checked.mixed}", graph_opt=p.graph_opt,
                      target=manifest.target, constants=manifest.constants, tf32=checked.tf32)
    return (lambda feed: ort.run(sessions(feed), feed)), info


def _emulated_model(p: VerifyParams, checked: CheckedPlan) -> Path:
    """The model the emulation runs: the rewritten model in the folder, or the one pins.json names."""
    if checked.fix == "rewrite":
        model = p.file(checked.model, "rewritten model")
        if not model.is_file():
            raise BadInput(f"{model} not found: verify --backend emulate emulates the rewritten model a bisect wrote")
        return model
    pins_file = p.file("pins.json", "pins file")
    saved = read_pins(pins_file)
    model = saved.model_path(pins_file)
    if model is None or not model.is_file():
        raise BadInput(f"{pins_file} names no model file that exists ({saved.model!r}); verify --backend emulate emulates it")
    return model


def _emulated(p: VerifyParams, manifest: Manifest, checked: CheckedPlan):
    """The CPU stand-in: the plan's emulation under the run's target, converting constants as the mixed ONNX does. The
    pins: the model and plan pins.json names now; a rewrite: the rewritten model in the folder, with its pins."""
    from ..graph import open_model

    model = _emulated_model(p, checked)
    graph = open_model(model)
    if checked.fix == "rewrite":
        plan = Plan(manifest.precision, frozenset(checked.pins))
    else:
        pins_file = p.file("pins.json", "pins file")
        saved = read_pins(pins_file)
        names = {n.name for n in graph.all_nodes()}
        plan = Plan(saved.precision, _plan_nodes(saved, pins_file, names, str(model)) | frozenset(
            saved.nodes_in(graph, str(pins_file), str(model))))
    backend = EngineParams(profile=manifest.profile, recurrent=manifest.recurrent, target=manifest.target,
                           constants=manifest.constants, tf32=checked.tf32).make()
    return backend.runner(graph, plan), backend.info()


def _check(p: VerifyParams, manifest: Manifest, criteria, checked: CheckedPlan):
    """Every saved sample through one plan: (per-sample verdicts, what ran)."""
    runner, info = _ort_cuda(p, manifest, checked) if p.backend == "ort-cuda" else _emulated(p, manifest, checked)
    verdicts = []
    for k, s in enumerate(manifest.samples):
        feed, ref = read_sample(Path(p.folder) / FOLDER, s, root=p.folder)
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
    manifest = read_manifest(Path(p.folder) / FOLDER, root=p.folder)
    plans = _plans(manifest)
    _protect(p, manifest, [_emulated_model(p, c) for c in plans] if p.backend == "emulate" else [])
    criteria = acc.parse(manifest.accept)
    clock.lap("load")
    pins_file = p.file("pins.json", "pins file")
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
