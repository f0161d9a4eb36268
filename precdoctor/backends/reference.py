"""The FP32 reference: the unmodified model on ONNX Runtime (CUDA when asked and present)."""
from __future__ import annotations

from . import ort


def providers() -> list[str]:
    import onnxruntime

    have = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


class ReferenceRunner:
    """Runs the model as exported: the outputs every plan is judged against."""

    def __init__(self, graph, use_cuda: bool = False):
        self.providers = providers() if use_cuda else ["CPUExecutionProvider"]
        self.sessions = ort.ShapedSessions(graph.model, providers=self.providers, weights=graph.store)
        self.outputs = graph.outputs

    def __call__(self, feed: dict) -> dict:
        return ort.run(self.sessions(feed), feed, self.outputs)
