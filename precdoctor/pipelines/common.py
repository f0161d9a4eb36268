"""What every command's pipeline does first: load the model once, gather inputs, time stages, name versions."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from .. import __version__
from ..analysis.comparison import Comparison
from ..core.errors import BadInput
from ..graph import GraphView, open_model
from ..graph.bounds import check_sizes
from ..planning.inputs import InputSpec, Sample, infinite_inputs
from ..runs import InputInfo
from ..tasks.judge import TaskJudge
from ..analysis.verdicts import VERDICT, input_warnings

VERSIONED = ("onnx", "onnxruntime", "onnxruntime-gpu", "numpy", "polygraphy", "tensorrt")


def versions() -> dict[str, str]:
    out = {"precdoctor": __version__}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


@dataclass
class Clock:
    """Wall time of a pipeline's stages, in seconds."""

    start: float = field(default_factory=time.perf_counter)
    laps: dict[str, float] = field(default_factory=dict)
    _last: float = field(default=0.0)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = self.laps.get(stage, 0.0) + now - (self._last or self.start)
        self._last = now

    def timing(self) -> dict[str, float]:
        return {**{k: round(v, 3) for k, v in self.laps.items()}, "total": round(time.perf_counter() - self.start, 3)}


def load_graph(model: str) -> GraphView:
    """The model, loaded once per command; one with no output or no float tensor has nothing to compare."""
    graph = open_model(model)
    if not graph.outputs:
        raise BadInput(f"{model} has no graph outputs: nothing to compare")
    if not graph.float_tensors():
        raise BadInput(f"{model} has no float32 tensors: nothing to run in reduced precision")
    return graph


def gather(graph: GraphView, spec: InputSpec, what: str = VERDICT) -> tuple[list[Sample], InputInfo, list[str]]:
    """The samples, where they came from, and the warnings they call for (random data, infinite values); ``what``:
    the command's results, as the random-data warning names them."""
    samples = spec.samples(graph)
    check_sizes(graph, samples)
    source = "files" if spec.files else ("arrays" if spec.arrays else "random")
    info = InputInfo(len(samples), source, list(spec.files), spec.seed if source == "random" else None)
    return samples, info, input_warnings(source, info.seed, infinite_inputs(samples), what)


@dataclass
class Loaded:
    """The start of a command: its clock, the model under test loaded once, its samples and what gathering them said."""

    clock: Clock
    model: str  # the model under test (a task may put its decoder under test)
    graph: GraphView
    samples: list[Sample]
    info: InputInfo
    warnings: list[str]
    judge: TaskJudge | None = None  # the task's judge, where the samples are its clips


def begin(model: str, spec: InputSpec, what: str = VERDICT) -> Loaded:
    """The start of a command on input samples: clock started, model loaded once, samples gathered."""
    clock = Clock()
    graph = load_graph(model)
    samples, info, warnings = gather(graph, spec, what)
    return Loaded(clock, str(model), graph, samples, info, warnings)


def refuse_empty_outputs(c: Comparison) -> None:
    """A comparison over outputs that hold no element at all judged nothing: that is not a verdict."""
    if c.outputs and all(o.elements == 0 for o in c.outputs.values()):
        raise BadInput("every output of the model is empty on these inputs (0 elements): nothing to compare")
