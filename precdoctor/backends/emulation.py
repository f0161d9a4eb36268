"""CPU emulation of FP16/BF16: the rounded FP32 graph of emulation.py on ONNX Runtime CPU."""
from __future__ import annotations

from ..emulation import EmulationOptions, emulation_model
from ..gating import GatedEmulation, gated_model
from ..limits import MEMORY_BUDGET_GB
from . import Backend, EngineInfo, Measurement, PlanRunners, Runner, ort
from .paired import Candidate, measure_paired


class EmulationBackend(Backend):
    name = "emulate"

    def __init__(self, options: EmulationOptions | str = EmulationOptions(), memory_budget_gb: float = MEMORY_BUDGET_GB,
                 target: str | None = None, device: str = "cpu"):
        self.options = EmulationOptions(profile=options) if isinstance(options, str) else options
        self.memory_budget_gb, self.target, self.device = memory_budget_gb, target, device
        # CUDA (not run here: no GPU): the rounded FP32 graph on ORT's CUDA kernels; their own TF32 stays off, the
        # target's TF32 being modelled by the graph itself (rounding.tf32_nodes), as on the CPU
        self.providers = None
        if device == "cuda":
            from .ort_cuda import cuda_providers

            self.providers = cuda_providers(tf32=False, what="--device cuda")

    @property
    def profile(self) -> str:
        return self.options.profile

    def info(self) -> EngineInfo:
        o = self.options
        return EngineInfo(self.name, f"onnxruntime {'CUDA' if self.device == 'cuda' else 'CPU'}, rounded FP32 graph", profile=o.profile,
                          recurrent=o.recurrent, target=self.target, constants=o.constants, tf32=o.tf32,
                          device=self.device if self.device != "cpu" else None)

    def runner(self, graph, plan, samples=None):
        # no graph rewrites: ORT's LayerNorm fusion fires even at its basic level and would change the numbers
        emu = emulation_model(graph, plan, self.options)
        sessions = ort.ShapedSessions(emu.model, graph_opt="none", weights=graph.store, samples=samples, prepack=False,
                                      providers=self.providers)
        outputs = graph.outputs
        return lambda feed: ort.run(sessions(feed), feed, outputs)

    def runners(self, graph, samples=None) -> PlanRunners:
        return GatedRunners(self, graph, samples)

    def measure(self, graph, plan, samples) -> Measurement:
        emu = emulation_model(graph, plan, self.options)
        m = measure_paired(graph, plan.format, samples, Candidate(emu.model, emu.order), providers=self.providers,
                           memory_budget_gb=self.memory_budget_gb)
        m.notes = emu.notes + m.notes
        return m


class GatedRunners(PlanRunners):
    """Every plan of a search on one gated emulation per format (gating.py), built on first use: each plan is
    then an inference pass with its vector fed, no model or session built."""

    def __init__(self, backend: EmulationBackend, graph, samples=None):
        super().__init__(backend, graph, samples)
        self.gated: dict[str, tuple[GatedEmulation, ort.ShapedSessions]] = {}  # format -> the model and its sessions

    def __call__(self, plan) -> Runner:
        fmt = plan.format.name
        if fmt not in self.gated:
            g = gated_model(self.graph, plan.format, self.backend.options)
            self.gated[fmt] = g, ort.ShapedSessions(g.model, graph_opt="none", weights=self.graph.store, samples=self.samples,
                                                    prepack=False, providers=self.backend.providers)
        g, sessions = self.gated[fmt]
        extra, outputs = g.feeds(plan), self.graph.outputs

        def run(feed: dict) -> dict:
            fed = dict(feed, **extra)
            return ort.run(sessions(fed), fed, outputs)

        return run
