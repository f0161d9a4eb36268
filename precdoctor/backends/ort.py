"""ONNX Runtime sessions built from in-memory models, with errors made readable."""
from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

import numpy as np
import onnx

from ..errors import BadInput
from ..graph import inline_bytes, with_input_shapes
from ..limits import INLINE_LIMIT, MAX_SHAPE_SESSIONS

if TYPE_CHECKING:
    from ..graph.weights import WeightStore


def session(model: onnx.ModelProto, providers: list[str] | None = None, graph_opt: str = "basic", threads: int = 0, lean: bool = False,
            weights: WeightStore | None = None, prepack: bool = True):
    """An InferenceSession for ``model``; models past protobuf's 2 GB go through a temp file.

    ``weights``: the store ``model``'s external references point into (``GraphView.store``); the
    model is written into its folder for the session to read them from.

    ``graph_opt`` defaults to ``basic``: constant folding only. ORT's extended
    fusions (LayerNorm, Gelu, attention) change the numbers, which is exactly
    what a precision comparison must not have happen behind its back.
    ``lean`` (paired probe graphs): execute in node order (PRIORITY_BASED),
    which our interleaved graphs are laid out for, with no CPU arena and no
    memory pattern, which would keep the high-water mark of every run
    (measured on wav2vec2-base: 1.9 GB peak instead of 5.9 GB in default order).
    ``prepack=False``: MatMul/Gemm weights are not repacked at load; a weight that is a constant in one graph
    and computed in another (the gated emulation selects it, gating.py) then goes through the same kernel,
    bit for bit (a prepacked single-row MatMul rounds differently: measured on ORT 1.32).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_opt]
    so.log_severity_level = 3
    if lean:
        so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
        so.enable_cpu_mem_arena = False
        so.enable_mem_pattern = False
    if threads:
        so.intra_op_num_threads = threads
    if not prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    providers = providers or ["CPUExecutionProvider"]
    try:
        if weights is not None:
            fd, path = tempfile.mkstemp(suffix=".onnx", dir=weights.dir)
            with os.fdopen(fd, "wb") as fh:
                fh.write(model.SerializeToString())
            try:
                return ort.InferenceSession(path, so, providers=providers)
            finally:
                os.remove(path)
        if inline_bytes(model) < INLINE_LIMIT:
            return ort.InferenceSession(model.SerializeToString(), so, providers=providers)
        with tempfile.TemporaryDirectory(prefix="precdoctor-") as tmp:
            path = os.path.join(tmp, "model.onnx")
            onnx.save(model, path, save_as_external_data=True, location="model.data")
            return ort.InferenceSession(path, so, providers=providers)
    except Exception as exc:  # ORT raises its own exception types per failure
        raise BadInput(f"ONNX Runtime cannot run this model: {_first_line(exc)}") from None


def shape_key(feed: dict) -> tuple:
    return tuple(sorted((k, tuple(np.shape(v))) for k, v in feed.items()))


class ShapedSessions:
    """One session per input-shape signature, built on first use: ONNX Runtime plans concrete
    shapes far faster than symbolic ones (wav2vec2-base's paired probe graph: 9 s of session
    start-up became 1.2 s, and the run got faster too).

    Past ``max_shapes`` signatures (a dataset of clips of many lengths) one session with the
    model's own symbolic shapes serves the rest: each new session costs its start-up again.
    ``samples``, the feeds it is about to run where they are known: when they hold more signatures
    than ``max_shapes``, the symbolic session serves them all from the start (a decoder's steps,
    each a cache one longer: the range probes of Whisper's with-past decoder took 10 s per session).
    ``weights``, the store the model's weights live in, is held as long as these sessions are: a
    session built later, for a shape met later, reads its files (the view that owned it may be gone).
    """

    def __init__(self, model: onnx.ModelProto, max_shapes: int = MAX_SHAPE_SESSIONS, samples=None,
                 weights: WeightStore | None = None, **session_kw):
        if samples is not None and len({shape_key(s) for s in samples}) > max_shapes:
            max_shapes = 0
        self.model, self.kw, self.max_shapes = model, dict(session_kw, weights=weights), max_shapes
        self.sessions: dict = {}
        self.generic = None

    def __call__(self, feed: dict):
        key = shape_key(feed)
        if key in self.sessions:
            return self.sessions[key]
        if len(self.sessions) < self.max_shapes:
            self.sessions[key] = session(with_input_shapes(self.model, feed), **self.kw)
            return self.sessions[key]
        if self.generic is None:
            self.generic = session(self.model, **self.kw)
        return self.generic


def run(sess, feed: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    names = outputs or [o.name for o in sess.get_outputs()]
    try:
        values = sess.run(names, feed)
    except Exception as exc:
        raise BadInput(f"ONNX Runtime failed while running the model: {_first_line(exc)}") from None
    return dict(zip(names, values))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    # ORT prefixes messages with the source file of the failing check; keep the human part
    if "] :" in line:
        line = line.split("] :")[-1].strip(" :")
    return line[:400]
