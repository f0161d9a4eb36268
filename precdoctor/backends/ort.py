"""ONNX Runtime sessions built from in-memory models, with errors made readable."""
from __future__ import annotations

import os
import re
import tempfile
import threading
from typing import TYPE_CHECKING

import numpy as np
import onnx

from ..core.errors import BadInput
from ..core.files import write_error
from ..graph import inline_bytes, value_shape, with_input_shapes
from ..graph.naming import MARK
from ..core.limits import INLINE_LIMIT, MAX_SHAPE_SESSIONS

ORT_LOG_SEVERITY = 4  # FATAL: what ONNX Runtime still prints goes with a crash, not a failure we report
STOP_GRACE_SECONDS = 1.0  # how long a signalled command waits for ONNX Runtime to stop a run before it exits anyway

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
    # ONNX Runtime's own log (coloured ERROR lines of a failing kernel) stays off stderr: the failure comes back as
    # an exception that we say in one line; FATAL only (4) is ORT's quietest level
    ort.set_default_logger_severity(ORT_LOG_SEVERITY)
    so.log_severity_level = ORT_LOG_SEVERITY
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
        return _placed(_session(model, so, providers, weights), providers)
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types per failure
        if _cuda_failure(exc):
            raise BadInput(f"ONNX Runtime's CUDA provider failed while building a session ({_cuda_failure(exc)}): the GPU "
                           "is most likely out of memory (other processes, or this run's sessions of a large model); "
                           "free the GPU or run with --device cpu") from None
        raise BadInput(f"ONNX Runtime cannot run this model: {_first_line(exc)}") from None


# what ONNX Runtime's CUDA provider says when a CUDA library call fails (cuda_call.cc): a handle or an allocation the
# GPU could not give, never a fault of the model
# the status itself where the message names one, else the library's status type (the message may stop there)
CUDA_FAILURE = (re.compile(r"(CUBLAS_STATUS_\w+|CUDNN_STATUS_\w+|cudaError\w+|out of memory)"),
                re.compile(r"(cublasStatus_t|cudnnStatus_t|cudaError_t)"))


def _cuda_failure(exc: Exception) -> str | None:
    for pattern in CUDA_FAILURE:
        m = pattern.search(str(exc))
        if m:
            return m.group(1)
    return None


def _placed(sess, providers: list):
    """``sess``, refused where it asked for CUDA and got none: ONNX Runtime falls back to the CPU, with a log line
    only, when its CUDA provider library cannot load (cuDNN missing, say), and a GPU run would quietly be a CPU one."""
    if on_cuda(providers) and "CUDAExecutionProvider" not in sess.get_providers():
        raise BadInput("ONNX Runtime's CUDA provider did not load (its CUDA or cuDNN libraries were not found): the "
                       "session would run on the CPU; install onnxruntime-gpu's CUDA and cuDNN (pip install "
                       "'onnxruntime-gpu[cuda,cudnn]') or put them on LD_LIBRARY_PATH")
    return sess


def _session(model: onnx.ModelProto, so, providers: list, weights):
    """The InferenceSession itself: in memory, or through a file beside the weights or in a temporary folder."""
    import onnxruntime as ort

    if weights is not None:
        fd, path = tempfile.mkstemp(suffix=".onnx", dir=weights.dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(model.SerializeToString())
        except OSError as exc:
            os.remove(path)
            raise write_error(path, exc, "a model for ONNX Runtime") from None
        try:
            return interruptible(lambda: ort.InferenceSession(path, so, providers=providers))
        finally:
            os.remove(path)
    if inline_bytes(model) < INLINE_LIMIT:
        data = model.SerializeToString()
        return interruptible(lambda: ort.InferenceSession(data, so, providers=providers))
    with tempfile.TemporaryDirectory(prefix="precdoctor-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path, save_as_external_data=True, location="model.data")
        return interruptible(lambda: ort.InferenceSession(path, so, providers=providers))


def shape_key(feed: dict) -> tuple:
    return tuple(sorted((k, value_shape(v)) for k, v in feed.items()))


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
        if on_cuda(session_kw.get("providers")):
            # on a GPU each session holds its own copy of the weights and its own arena in GPU memory (a 317 M model's
            # search on an H100 stopped when a session could not be built, most likely out of it): one session there,
            # its shapes symbolic
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


def on_cuda(providers) -> bool:
    """Whether a provider list asks for ONNX Runtime's CUDA provider (names alone or (name, options) pairs)."""
    return any((p[0] if isinstance(p, tuple) else p) == "CUDAExecutionProvider" for p in providers or ())


class RuntimeFailure(RuntimeError):
    """ONNX Runtime failed running a graph precdoctor built (probes, the mixed ONNX, an emulation): a bug of ours,
    exit 3 (exits.py), never bad input."""


def run(sess, feed: dict, outputs: list[str] | None = None, keep: tuple[str, ...] = (), device: str = "cpu") -> dict:
    """The session's ``outputs`` on ``feed``, as numpy arrays; those named in ``keep`` stay where the session computed
    them, as OrtValues on ``device``, and a feed may hold such OrtValues: a decode loop's cache then stays on the GPU
    between steps (Whisper's cross-attention cache is about 18 MB a clip, fed at every step)."""
    import onnxruntime as ort

    outs = sess.get_outputs()
    names = outputs or [o.name for o in outs]
    bf16 = any(o.type == "tensor(bfloat16)" and o.name in names for o in outs)
    bound = bf16 or bool(keep) or any(isinstance(v, ort.OrtValue) for v in feed.values())
    opts = ort.RunOptions()
    opts.log_severity_level = ORT_LOG_SEVERITY
    try:
        values = interruptible(lambda: _run_bound(sess, feed, names, opts, keep, device) if bound else sess.run(names, feed, opts),
                               stop=lambda: setattr(opts, "terminate", True))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types per failure
        if _ours(sess) and not _in_users_node(exc):
            raise RuntimeFailure(f"ONNX Runtime failed while running a graph precdoctor built: {_first_line(exc)}") from exc
        raise BadInput(f"ONNX Runtime failed while running the model: {_first_line(exc)}") from None
    return dict(zip(names, values))


def _ours(sess) -> bool:
    """Whether the session runs a model precdoctor derived (graph.assemble names the producer) rather than the user's."""
    try:
        return sess.get_modelmeta().producer_name.startswith("precdoctor")
    except Exception:  # a stand-in session without metadata
        return False


def _in_users_node(exc: Exception) -> bool:
    """Whether ONNX Runtime names the failing node and it is one of the user's (derived graphs keep the model's node
    names and mark every node they add with naming.MARK): the model failing on its own inputs (a Gather index out of
    range), which is bad input even inside a graph precdoctor built."""
    m = re.search(r"Name:'([^']*)'", str(exc))
    return m is not None and MARK not in m.group(1)


def _run_bound(sess, feed: dict, names: list[str], opts=None, keep: tuple[str, ...] = (), device: str = "cpu") -> list:
    """A run through IO binding: OrtValue feeds bound as they are; outputs in ``keep`` left on ``device`` as OrtValues,
    the rest bound to host memory. BF16 outputs, which ONNX Runtime's Python binding cannot turn into numpy ("No
    corresponding Numpy type for Tensor Type. bfloat16"), are read from their raw bits (``bf16_array``), then as
    float32 like every other output precdoctor compares."""
    import onnxruntime as ort

    io = sess.io_binding()
    for k, v in feed.items():
        if isinstance(v, ort.OrtValue):
            io.bind_ortvalue_input(k, v)
        else:
            io.bind_cpu_input(k, np.ascontiguousarray(v))
    for n in names:
        io.bind_output(n, device if n in keep else "cpu")
    sess.run_with_iobinding(io, opts)
    return [v if n in keep else bf16_array(v) if v.data_type() == "tensor(bfloat16)" else v.numpy()
            for n, v in zip(names, io.get_outputs())]


def bf16_array(value) -> np.ndarray:
    """A host OrtValue of BF16 as a float32 array (its 16-bit patterns read through ml_dtypes' bfloat16)."""
    import ctypes

    import ml_dtypes

    shape = tuple(value.shape())
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return np.zeros(shape, np.float32)
    bits = np.ctypeslib.as_array((ctypes.c_uint16 * n).from_address(value.data_ptr())).copy()
    return bits.view(ml_dtypes.bfloat16).astype(np.float32).reshape(shape)


WORKER = "precdoctor-ort"  # the name of the threads ONNX Runtime's calls run in
# a signal stopped a call inside ONNX Runtime: the process must then leave by os._exit once its own clean-up is done
# (exits.py), as ONNX Runtime aborts in its static destructors after a terminated run or under a running one
interrupted = False


def interruptible(call, stop=None):
    """``call()``, run so that a signal can end the command while it is inside ONNX Runtime's C++ code.

    Python runs its signal handlers in the main thread between bytecodes: during one ``sess.run`` of a large
    model SIGTERM and Ctrl-C waited for the run to end (6-26 s measured). So, on the main thread, the call
    runs in a daemon worker while the main thread waits in short, interruptible joins; a signal's exception
    (Terminated, KeyboardInterrupt) then calls ``stop`` (RunOptions.terminate: ORT stops at the next node),
    waits a moment for the worker and goes on up the stack (``interrupted`` is then set). Off the main thread
    no signal arrives: it runs in place."""
    if threading.current_thread() is not threading.main_thread():
        return call()
    box: dict = {}

    def work():
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as it is
            box["error"] = exc

    worker = threading.Thread(target=work, name=WORKER, daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except BaseException:
        global interrupted
        interrupted = True
        if stop is not None:
            stop()
        worker.join(STOP_GRACE_SECONDS)
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    # ORT prefixes messages with the source file of the failing check; keep the human part
    if "] :" in line:
        line = line.split("] :")[-1].strip(" :")
    return line[:400]
