"""The FP32 reference: the unmodified model on ONNX Runtime (CUDA when asked and present)."""
from __future__ import annotations

from . import ort


def providers() -> list[str]:
    import onnxruntime

    have = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


class ReferenceRunner:
    """Runs the model as exported: the outputs every plan is judged against."""

    def __init__(self, graph, use_cuda: bool = False, keep: tuple[str, ...] = ()):
        """``keep``: outputs left on the session's device as OrtValues, to be fed back (ort.run)."""
        if use_cuda:  # ORT's CUDA provider computes FP32 MatMul/Conv in TF32 unless told not to: the reference would not be FP32
            from .ort_cuda import cuda_providers

            self.providers = cuda_providers(tf32=False, what="the FP32 reference on CUDA")
        else:
            self.providers = ["CPUExecutionProvider"]
        self.sessions = ort.ShapedSessions(graph.model, providers=self.providers, weights=graph.store)
        self.outputs, self.keep, self.device = graph.outputs, tuple(keep), "cuda" if use_cuda else "cpu"

    def __call__(self, feed: dict) -> dict:
        return ort.run(self.sessions(feed), feed, self.outputs, self.keep, self.device)
