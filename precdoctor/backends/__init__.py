"""Backends: one small interface, one module per engine, heavy imports deferred.

A backend answers two questions about a precision plan on some samples:
``runner(graph, plan)`` gives a callable returning the graph outputs the plan
produces (what the search evaluates), and ``probe(graph, plan, samples)``
gives per-tensor statistics against the FP32 reference (what comparison and
the report use). The FP32 reference itself is ``reference.ReferenceBackend``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import BadInput

Runner = Callable[[dict], dict]


@dataclass
class Probe:
    tensors: list[str]
    stats: np.ndarray  # [len(tensors), probe.K] raw sums over all samples
    outputs: list[tuple[dict, dict]] = field(default_factory=list)  # per sample: (reference, candidate)
    notes: list[str] = field(default_factory=list)


class Backend(ABC):
    name = "?"

    @abstractmethod
    def runner(self, graph, plan) -> Runner: ...

    @abstractmethod
    def probe(self, graph, plan, samples) -> Probe: ...

    def describe(self) -> dict:
        return {"backend": self.name}


BACKENDS = ("emulate", "ort-cuda", "trt")


def get_backend(name: str, **options) -> Backend:
    if name == "emulate":
        from .emulation import EmulationBackend

        return EmulationBackend(**options)
    if name == "ort-cuda":
        from .ort_cuda import OrtCudaBackend

        return OrtCudaBackend(**options)
    if name == "trt":
        from .trt import TrtBackend

        return TrtBackend(**options)
    raise BadInput(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
