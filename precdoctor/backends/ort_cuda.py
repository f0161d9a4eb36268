"""ONNX Runtime CUDA: the plan's mixed-precision ONNX on real FP16/BF16 GPU kernels.

onnxruntime-gpu is the user's choice (the core depends on plain onnxruntime);
it is detected at run time. ``graph_opt`` matters: ONNX Runtime's LayerNorm
fusion computes in FP32 and hides a variance overflow that unfused FP16
kernels show. Probing marks every tensor, which itself prevents fusions, so
per-tensor statistics always describe the unfused graph; ``runner`` (graph
outputs only) honours ``graph_opt``.
"""
from __future__ import annotations

import functools
import logging
from collections import OrderedDict

from ..core.errors import BadInput
from ..core.limits import KEPT_PLAN_SESSIONS
from ..numerics.mixed import mixed_model
from . import Backend, EngineInfo, Measurement, PlanRunners, Runner, ort
from .paired import Candidate, measure_paired

CUDA = "CUDAExecutionProvider"
log = logging.getLogger("precdoctor")


def cuda_providers(tf32: bool = False, what: str = "--backend ort-cuda") -> list:
    """ONNX Runtime's CUDA provider first; ``tf32``: its use_tf32 option (ORT's own default is on); ``what`` asked for it."""
    try:
        import onnxruntime
    except ImportError:
        raise BadInput("onnxruntime is not installed") from None
    _preload_cuda_libraries()
    if CUDA not in onnxruntime.get_available_providers():
        raise BadInput(f"{what} needs onnxruntime-gpu with a working CUDA (pip install onnxruntime-gpu); "
                       f"available providers: {', '.join(onnxruntime.get_available_providers())}")
    # TF32 would make the FP32 reference itself reduced-precision: off unless asked (precdoctor verify, a plan that allows it).
    # The arena grows by what is asked, not to the next power of two (ORT's default): a search holds several sessions
    # of one large model at once (the gated one, a plan's, the probes'), each with its own arena
    return [(CUDA, {"use_tf32": "1" if tf32 else "0", "arena_extend_strategy": "kSameAsRequested"}), "CPUExecutionProvider"]


@functools.cache
def _preload_cuda_libraries() -> None:
    """CUDA and cuDNN from the nvidia-* wheels (PyTorch's, say) where the loader would not look; once per process."""
    import onnxruntime

    preload = getattr(onnxruntime, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # noqa: BLE001 - a missing library shows when a session cannot place its nodes
            log.debug(f"onnxruntime.preload_dlls: {exc}")


class OrtCudaBackend(Backend):
    name = "ort-cuda"

    def __init__(self, graph_opt: str = "none"):
        self.graph_opt = graph_opt
        self.providers = cuda_providers()

    def info(self) -> EngineInfo:
        import onnxruntime

        return EngineInfo(self.name, f"onnxruntime-gpu {onnxruntime.__version__}, CUDA kernels", graph_opt=self.graph_opt)

    def runner(self, graph, plan, samples=None):
        sessions = ort.ShapedSessions(mixed_model(graph, plan).model, providers=self.providers, graph_opt=self.graph_opt,
                                      samples=samples)
        outputs = graph.outputs
        return lambda feed: ort.run(sessions(feed), feed, outputs)

    def runners(self, graph, samples=None) -> PlanRunners:
        return KeptRunners(self, graph, samples)

    def measure(self, graph, plan, samples) -> Measurement:
        mixed = mixed_model(graph, plan)
        cand = Candidate(mixed.model, mixed.order, {t: plan.format.onnx_type for t in mixed.low_tensors})
        return measure_paired(graph, plan.format, samples, cand, self.providers, "none")


class KeptRunners(PlanRunners):
    """Each plan's mixed model and session built once and kept for the plans last run (``KEPT_PLAN_SESSIONS``): a
    plan asked for again (the naive plan, a plan confirmed after the search) runs without a new session. Real FP16/BF16
    kernels need a model per plan, unlike the emulation's one gated session (gating.py)."""

    def __init__(self, backend: Backend, graph, samples=None):
        super().__init__(backend, graph, samples)
        self.kept: OrderedDict[str, Runner] = OrderedDict()
        self.built = 0  # sessions built (the run's log says how many plans needed one)

    def __call__(self, plan) -> Runner:
        key = plan.key()
        if key in self.kept:
            self.kept.move_to_end(key)
            return self.kept[key]
        runner = self.kept[key] = self.backend.runner(self.graph, plan, self.samples)
        self.built += 1
        while len(self.kept) > KEPT_PLAN_SESSIONS:
            self.kept.popitem(last=False)
        return runner
