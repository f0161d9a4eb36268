"""Where a task's own FP32 models run and how much memory its passes may hold: the engine's --device and
--memory-budget, handed to the judge where the pipeline builds it."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.limits import MEMORY_BUDGET_GB


@dataclass(frozen=True)
class Placement:
    device: str = "cpu"  # the engine's device (EngineParams.device): cuda puts the task's FP32 runners on the GPU
    memory_budget_gb: float = MEMORY_BUDGET_GB

    @property
    def budget_bytes(self) -> int:
        return int(self.memory_budget_gb * 2**30)

    def fp32_runner(self, graph, cache: tuple[str, ...] = ()):
        """The model as exported, on the device (CUDA without TF32: the FP32 reference stays FP32). ``cache``: outputs
        a decode loop feeds back at the next step, kept on the GPU there (copied to the host and back at every step,
        Whisper's cross-attention cache alone is 0.3 GB a step for 16 clips)."""
        from ..backends.reference import ReferenceRunner

        cuda = self.device == "cuda"
        return ReferenceRunner(graph, use_cuda=cuda, keep=cache if cuda else ())

    def emulation(self):
        """The emulation backend on the device (a decoder that runs each configuration's naive plan)."""
        from ..backends.emulate import EmulationBackend

        return EmulationBackend(memory_budget_gb=self.memory_budget_gb, device=self.device)


def of_engine(engine) -> Placement:
    """The placement an EngineParams asks for."""
    return Placement(engine.device, engine.memory_budget_gb)
