"""CPU emulation of FP16/BF16: the rounded FP32 graph of emulation.py on ONNX Runtime CPU."""
from __future__ import annotations

from ..emulation import EmulationOptions, emulation_model
from ..limits import MEMORY_BUDGET_GB
from . import Backend, EngineInfo, Measurement, ort
from .paired import Candidate, measure_paired


class EmulationBackend(Backend):
    name = "emulate"

    def __init__(self, options: EmulationOptions | str = EmulationOptions(), memory_budget_gb: float = MEMORY_BUDGET_GB,
                 target: str | None = None):
        self.options = EmulationOptions(profile=options) if isinstance(options, str) else options
        self.memory_budget_gb, self.target = memory_budget_gb, target

    @property
    def profile(self) -> str:
        return self.options.profile

    def info(self) -> EngineInfo:
        o = self.options
        return EngineInfo(self.name, "onnxruntime CPU, rounded FP32 graph", profile=o.profile, recurrent=o.recurrent,
                          target=self.target, constants=o.constants, tf32=o.tf32)

    def runner(self, graph, plan, samples=None):
        # no graph rewrites: ORT's LayerNorm fusion fires even at its basic level and would change the numbers
        emu = emulation_model(graph, plan, self.options)
        sessions = ort.ShapedSessions(emu.model, graph_opt="none", weights=graph.store, samples=samples)
        outputs = graph.outputs
        return lambda feed: ort.run(sessions(feed), feed, outputs)

    def measure(self, graph, plan, samples) -> Measurement:
        emu = emulation_model(graph, plan, self.options)
        m = measure_paired(graph, plan.format, samples, Candidate(emu.model, emu.order), memory_budget_gb=self.memory_budget_gb)
        m.notes = emu.notes + m.notes
        return m
