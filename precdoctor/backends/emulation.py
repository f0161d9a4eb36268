"""CPU emulation of FP16/BF16: the rounded FP32 graph of emulate.py on ONNX Runtime CPU."""
from __future__ import annotations

from ..emulate import PROFILES, emulation_model
from . import Backend, Probe, ort
from .paired import MEMORY_BUDGET_GB, paired_probe


class EmulationBackend(Backend):
    name = "emulate"

    def __init__(self, profile: str = "fused", memory_budget_gb: float = MEMORY_BUDGET_GB):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}")
        self.profile = profile
        self.memory_budget_gb = memory_budget_gb

    def describe(self) -> dict:
        return {"backend": self.name, "profile": self.profile, "engine": "onnxruntime CPU, rounded FP32 graph"}

    def runner(self, graph, plan):
        # no graph rewrites: ORT's LayerNorm fusion fires even at its basic level and would change the numbers
        sessions = ort.ShapedSessions(emulation_model(graph, plan, self.profile), graph_opt="none", weights_dir=graph.weights_dir)
        outputs = graph.outputs
        return lambda feed: ort.run(sessions(feed), feed, outputs)

    def probe(self, graph, plan, samples) -> Probe:
        order: dict[str, int] = {}
        cand = emulation_model(graph, plan, self.profile, order)
        return paired_probe(graph, plan, samples, cand, order, memory_budget_gb=self.memory_budget_gb)
