"""Backends: one small interface, one module per engine, heavy imports deferred.

A backend answers two questions about a precision plan on some samples:
``runner(graph, plan, samples)`` gives a callable returning the graph outputs the plan
produces (what the search evaluates; ``samples``, where known, are the feeds it will be
given, so that sessions suit their shapes), and ``measure(graph, plan, samples)``
gives per-tensor statistics against the FP32 reference (what comparison and
the report use). The FP32 reference itself is ``reference.ReferenceRunner``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..core.errors import BadInput
from ..core.limits import MEMORY_BUDGET_GB
from ..core.records import Record

Runner = Callable[[dict], dict]
BACKENDS = ("emulate", "ort-cuda", "trt")
GRAPH_OPT_LEVELS = ("none", "basic", "all")
VERIFY_BACKENDS = ("ort-cuda", "emulate")  # what `precdoctor verify` runs a shipped plan on (emulate: the CPU stand-in)
TRT_TYPING = ("weak", "strong")
DEVICES = ("cpu", "cuda")  # where the emulation runs (--device): ONNX Runtime's CPU or CUDA provider


@dataclass
class Measurement:
    """Raw per-tensor statistics of a plan against FP32, summed over the samples."""

    tensors: list[str]
    stats: np.ndarray  # [len(tensors), probes.K]
    outputs: list[tuple[dict, dict]] = field(default_factory=list)  # per sample: (reference, candidate) graph outputs
    notes: list[str] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)  # per sample: control-flow deciding tensor -> (reference, candidate)


@dataclass
class EngineInfo(Record):
    """What computed the reduced precision, as the run records it."""

    backend: str
    engine: str
    profile: str | None = None
    recurrent: str | None = None  # how LSTM/GRU/RNN were emulated (emulation.EmulationOptions)
    target: str | None = None  # the target engine the emulation stands for (targets.py)
    constants: str | None = None  # how the emulation converted FP32 constants (clamp, cast)
    tf32: bool | None = None  # whether the emulation computed the FP32 islands' inner products in TF32
    device: str | None = None  # the emulation on ONNX Runtime CUDA ("cuda"); None: the CPU
    graph_opt: str | None = None
    tensorrt: str | None = None
    typing: str | None = None
    pins_in_engine: dict[str, Any] | None = None


class Backend(ABC):
    name = "?"

    @abstractmethod
    def runner(self, graph, plan, samples=None) -> Runner: ...

    @abstractmethod
    def measure(self, graph, plan, samples) -> Measurement: ...

    @abstractmethod
    def info(self) -> EngineInfo: ...

    def runners(self, graph, samples=None) -> PlanRunners:
        """Runners for the many plans of a search on one graph (a backend whose plans share a session overrides it)."""
        return PlanRunners(self, graph, samples)


class PlanRunners:
    """The runner of each plan a search asks for on one graph and its samples: by default one per plan."""

    def __init__(self, backend: Backend, graph, samples=None):
        self.backend, self.graph, self.samples = backend, graph, samples

    def __call__(self, plan) -> Runner:
        return self.backend.runner(self.graph, plan, self.samples)

    def outputs(self, plan) -> list[dict]:
        """The plan's graph outputs on every sample, in order."""
        runner = self(plan)
        return [runner(s) for s in self.samples]


@dataclass(frozen=True)
class EngineParams:
    """The engine options a command takes (``--target``, ``--backend``, ...). ``profile``, ``recurrent``,
    ``constants`` and ``tf32`` left None take the target's (targets.py)."""

    backend: str = "emulate"
    profile: str | None = None
    graph_opt: str = "none"
    trt_typing: str = "strong"
    memory_budget_gb: float = MEMORY_BUDGET_GB
    recurrent: str | None = None  # emulation of LSTM/GRU/RNN (recurrent.MODES)
    target: str | None = None  # None: targets.DEFAULT_TARGET
    constants: str | None = None  # constant conversion (constants.CONVERSIONS)
    tf32: bool | None = None
    device: str = "cpu"  # the emulation's ONNX Runtime provider (DEVICES)

    @property
    def target_name(self) -> str:
        from ..numerics.targets import DEFAULT_TARGET

        return self.target or DEFAULT_TARGET

    def options(self):
        """The emulation options: the target's, with the overrides given."""
        from ..numerics.targets import get_target

        given = {k: getattr(self, k) for k in ("profile", "recurrent", "constants", "tf32") if getattr(self, k) is not None}
        return replace(get_target(self.target_name).options(), **given)

    def check(self) -> None:
        self.options().check()
        for value, allowed, what in ((self.backend, BACKENDS, "backend"), (self.graph_opt, GRAPH_OPT_LEVELS, "graph optimization level"),
                                     (self.trt_typing, TRT_TYPING, "TensorRT typing")):
            if value not in allowed:
                raise BadInput(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
        if self.device not in DEVICES:
            raise BadInput(f"unknown --device {self.device!r}; expected one of {', '.join(DEVICES)}")
        if self.device != "cpu" and self.backend != "emulate":
            raise BadInput(f"--device places the emulation (--backend emulate); --backend {self.backend} chooses its own")
        if self.device == "cuda":
            from .ort_cuda import cuda_providers

            cuda_providers(what="--device cuda")  # onnxruntime-gpu with CUDA present, or one line now
        if not self.memory_budget_gb > 0:
            raise BadInput(f"--memory-budget must be a positive number of GB, not {self.memory_budget_gb}")

    def make(self) -> Backend:
        self.check()
        if self.backend == "emulate":
            from .emulate import EmulationBackend

            return EmulationBackend(self.options(), self.memory_budget_gb, self.target_name, self.device)
        if self.backend == "ort-cuda":
            from .ort_cuda import OrtCudaBackend

            return OrtCudaBackend(self.graph_opt)
        from .trt import TrtBackend

        return TrtBackend(self.trt_typing)
