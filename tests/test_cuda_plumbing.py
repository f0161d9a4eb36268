"""What the GPU paths decide without a GPU: a CUDA session that fell back to the CPU is refused, and ort-cuda's
plan sessions are kept for plans asked for again."""
import numpy as np
import planted
import pytest

from precdoctor.backends import ort
from precdoctor.backends.emulate import EmulationBackend
from precdoctor.backends.ort_cuda import KeptRunners
from precdoctor.core.errors import BadInput
from precdoctor.core.limits import KEPT_PLAN_SESSIONS
from precdoctor.graph import view
from precdoctor.planning.plan import Plan


class _Session:
    def __init__(self, placed):
        self.placed = placed

    def get_providers(self):
        return self.placed


def test_a_cuda_session_onnx_runtime_put_on_the_cpu_is_refused_in_one_line():
    cuda = [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    with pytest.raises(BadInput, match="CUDA provider did not load"):
        ort._placed(_Session(["CPUExecutionProvider"]), cuda)
    s = _Session(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert ort._placed(s, cuda) is s
    cpu = _Session(["CPUExecutionProvider"])
    assert ort._placed(cpu, ["CPUExecutionProvider"]) is cpu  # a CPU session asked for is no fallback


def test_plan_sessions_are_kept_for_the_plans_last_run(monkeypatch):
    fx = planted.two_culprits()
    g = view(fx.model)
    backend = EmulationBackend()
    built = []
    real = backend.runner
    monkeypatch.setattr(backend, "runner", lambda graph, plan, samples=None: built.append(plan.key()) or real(graph, plan, samples))
    runners = KeptRunners(backend, g, [fx.sample])
    naive, pinned = Plan("fp16"), Plan("fp16", frozenset(fx.culprits["fp16"]))
    want = runners(naive)(fx.sample)
    runners(pinned)
    assert runners(naive)(fx.sample).keys() == want.keys()
    assert built == [naive.key(), pinned.key()] and runners.built == 2  # the naive plan's session served it again
    names = [n.name for n in g.nodes]
    for k in range(KEPT_PLAN_SESSIONS + 1):
        runners(Plan("fp16", frozenset(names[:k + 1])))
    assert len(runners.kept) == KEPT_PLAN_SESSIONS  # the oldest given back: each holds its weights on the GPU
    runners(naive)
    assert runners.built == 2 + KEPT_PLAN_SESSIONS + 2  # the naive plan had been given back: built again


def test_a_cuda_library_failure_building_a_session_is_said_as_the_gpu_not_the_model(monkeypatch):
    """What the lent H100 printed when a wav2vec2-large search ran out of GPU memory (cuda_call.cc, cuBLAS): one line
    naming the GPU, not "cannot run this model"."""
    import onnxruntime

    said = ("[ONNXRuntimeError] : 1 : FAIL : Exception during initialization: /onnxruntime_src/onnxruntime/core/providers/"
            "cuda/cuda_call.cc:154 std::conditional_t<THRW, void, onnxruntime::common::Status> onnxruntime::CudaCall("
            "ERRTYPE, const char*, const char*, SUCCTYPE, const char*, const char*, int) [with ERRTYPE = cublasStatus_t; "
            "bool THRW = true] CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED")

    def refuse(*a, **k):
        raise RuntimeError(said)

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    fx = planted.two_culprits()
    with pytest.raises(BadInput, match="CUDA provider failed while building a session .CUBLAS_STATUS_ALLOC_FAILED"):
        ort.session(fx.model)
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("Node X: bad")))
    with pytest.raises(BadInput, match="cannot run this model: Node X"):
        ort.session(fx.model)


def test_on_cuda_one_session_serves_every_input_shape(monkeypatch):
    """Each CUDA session holds its own copy of the weights on the GPU: no session per batch shape there."""
    built = []
    monkeypatch.setattr(ort, "session", lambda model, **kw: built.append(kw.get("providers")) or object())
    fx = planted.two_culprits()
    cuda = [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    name = next(iter(fx.sample))
    feeds = [{name: np.zeros((n, 4), np.float32)} for n in (1, 2, 8)]  # three batch shapes (the stand-in runs nothing)
    gpu = ort.ShapedSessions(fx.model, providers=cuda)
    assert gpu(feeds[0]) is gpu(feeds[1]) is gpu(feeds[2]) and len(built) == 1
    cpu = ort.ShapedSessions(fx.model, providers=["CPUExecutionProvider"])
    assert len({id(cpu(f)) for f in feeds}) == 3 and len(built) == 4  # on the CPU a session per shape (planned faster)
