"""CPU emulation of FP16/BF16: the rounded FP32 graph of emulation.py on ONNX Runtime CPU."""
from __future__ import annotations

import logging
import time

import numpy as np

from ..numerics.emulation import EmulationOptions, emulation_model
from ..core.errors import BadInput
from ..numerics.gating import GatedEmulation, gated_model
from ..core.limits import BATCH_SAMPLES, GATED_LIVE_FACTOR, MEMORY_BUDGET_GB
from ..graph import concrete_sizes, peak_activation_elements
from . import Backend, EngineInfo, Measurement, PlanRunners, Runner, ort
from .paired import Candidate, measure_paired

log = logging.getLogger("precdoctor")


class EmulationBackend(Backend):
    name = "emulate"

    def __init__(self, options: EmulationOptions | str = EmulationOptions(), memory_budget_gb: float = MEMORY_BUDGET_GB,
                 target: str | None = None, device: str = "cpu", threads: int = 0):
        self.options = EmulationOptions(profile=options) if isinstance(options, str) else options
        self.memory_budget_gb, self.target, self.device = memory_budget_gb, target, device
        self.threads = threads  # ONNX Runtime's intra-op threads (0: its default, a thread per core); a Ray actor sets its share
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

    def sessions(self, model, graph, samples=None) -> ort.ShapedSessions:
        """Sessions for an emulation of ``graph``, per-plan or gated alike: no graph rewrites (ORT's LayerNorm fusion
        fires even at its basic level), no MatMul prepacking (the two paths then agree bit for bit: ort.session)."""
        return ort.ShapedSessions(model, graph_opt="none", weights=graph.store, samples=samples, prepack=False,
                                  providers=self.providers, threads=self.threads)

    def runner(self, graph, plan, samples=None):
        # no graph rewrites: ORT's LayerNorm fusion fires even at its basic level and would change the numbers
        emu = emulation_model(graph, plan, self.options)
        sessions = self.sessions(emu.model, graph, samples)
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
        self.batches: dict[str, bool] = {}  # format -> whether samples of one shape may run as one batch (free_batch_axis)
        self.limits: dict[tuple, int] = {}  # input-shape signature -> samples one batched pass may take (batch_limit)
        self.choice = Choice()

    def __call__(self, plan) -> Runner:
        fmt = plan.format.name
        if fmt not in self.gated:
            g = gated_model(self.graph, plan.format, self.backend.options)
            self.gated[fmt] = g, self.backend.sessions(g.model, self.graph, self.samples)
        g, sessions = self.gated[fmt]
        extra, outputs = g.feeds(plan), self.graph.outputs

        def run(feed: dict) -> dict:
            fed = dict(feed, **extra)
            return ort.run(sessions(fed), fed, outputs)

        return run

    def outputs(self, plan) -> list[dict]:
        """Every sample's outputs; samples of one shape as batches where the model's first axis is a free batch axis.
        Gated or per-plan, whichever this machine runs cheaper (the outputs are the same, bit for bit): ``Choice``."""
        t = time.perf_counter()
        kind = self.choice.pick()
        if kind == "gated":
            try:
                out = self._outputs(plan, self(plan))
            except (BadInput, ort.RuntimeFailure) as exc:
                # the per-plan graphs compute the same outputs bit for bit: a gated model ONNX Runtime refuses (a weight
                # read inside a control-flow body it cannot resolve, say) costs speed, never the verdict
                log.warning(f"the gated emulation could not run ({exc}); every plan gets its own graph")
                self.choice.chosen = kind = "per-plan"
                out = self._outputs(plan, PlanRunners.__call__(self, plan))
        else:
            out = self._outputs(plan, PlanRunners.__call__(self, plan))
        self.choice.took(kind, time.perf_counter() - t)
        return out

    def _outputs(self, plan, runner: Runner) -> list[dict]:
        fmt = plan.format.name
        groups: dict[tuple, list[int]] = {}
        for k, s in enumerate(self.samples):
            groups.setdefault(ort.shape_key(s), []).append(k)
        if fmt not in self.batches:
            pair = next((ks[:2] for ks in groups.values() if len(ks) > 1), None)
            self.batches[fmt] = pair is not None and free_batch_axis(self.graph, runner, [self.samples[k] for k in pair])
        out: list = [None] * len(self.samples)
        for ks in groups.values():
            n = self.batch_limit(self.samples[ks[0]]) if self.batches[fmt] else 1
            chunks = [ks[i:i + n] for i in range(0, len(ks), n)]
            for chunk in chunks:
                if len(chunk) == 1:
                    out[chunk[0]] = runner(self.samples[chunk[0]])
                    continue
                for k, res in zip(chunk, _split(runner(_stack([self.samples[k] for k in chunk])), [self.samples[k] for k in chunk])):
                    out[k] = res
        return out


    def batch_limit(self, feed: dict) -> int:
        """Samples of this shape one batched pass may take: BATCH_SAMPLES, fewer where the pass's peak of live
        activations (``peak_activation_elements``, float32, times GATED_LIVE_FACTOR for the rounded copies the gated
        graph keeps beside each tensor) would pass --memory-budget; on a GPU as on the CPU. At least one. Once per
        input shape (the walk over the graph would otherwise repeat at every evaluation)."""
        key = ort.shape_key(feed)
        if key not in self.limits:
            one = 4 * GATED_LIVE_FACTOR * peak_activation_elements(self.graph, concrete_sizes(self.graph, feed))
            self.limits[key] = max(1, min(BATCH_SAMPLES, int(self.backend.memory_budget_gb * 2**30 // max(one, 1))))
        return self.limits[key]


class Choice:
    """Gated or per-plan, by what each costs here. A per-plan evaluation builds a model and a session (on the CPU with
    weights in the store, about 0.1 s for wav2vec2-base; on a GPU seconds: weights uploaded, kernels set up) and runs
    the plain rounded graph; a gated one builds once and pays a select per edge on every pass (1.5x an FP32 pass on
    wav2vec2-base on the CPU, against 1.2x for the per-plan graph: BENCHMARKS.md). The first evaluation runs per-plan,
    the next two gated (the build, then a pass alone); the cheaper serves the rest."""

    def __init__(self):
        self.seconds: dict[str, list[float]] = {"per-plan": [], "gated": []}
        self.chosen: str | None = None

    def pick(self) -> str:
        if self.chosen is not None:
            return self.chosen
        return "per-plan" if not self.seconds["per-plan"] else "gated"

    def took(self, kind: str, seconds: float) -> None:
        self.seconds[kind].append(seconds)
        if self.chosen is None and len(self.seconds["gated"]) >= 2:
            self.chosen = "gated" if self.seconds["gated"][-1] <= self.seconds["per-plan"][0] else "per-plan"


def _stack(feeds: list[dict]) -> dict:
    return {name: np.concatenate([f[name] for f in feeds], axis=0) for name in feeds[0]}


def _split(batched: dict, feeds: list[dict]) -> list[dict]:
    sizes = np.cumsum([len(next(iter(f.values()))) for f in feeds])[:-1]
    parts = {name: np.split(v, sizes, axis=0) for name, v in batched.items()}
    return [{name: parts[name][k] for name in batched} for k in range(len(feeds))]


def free_batch_axis(graph, runner: Runner, pair: list[dict]) -> bool:
    """Whether two samples of one shape may run as one batch: every input's first axis is dynamic in the model, and
    the batched outputs are, bit for bit, the two samples' own (checked by value, never by an axis's name: a Reshape
    to a fixed 1 or a reduction over the batch fails it)."""
    dims = [vi.type.tensor_type.shape.dim for vi in graph.model.graph.input if vi.name in pair[0]]
    if not dims or any(len(d) == 0 or d[0].HasField("dim_value") for d in dims):
        return False
    if len({len(v) for f in pair for v in f.values()}) != 1:
        return False  # the inputs disagree on their first axis' length: it is not one batch axis
    try:
        batched = _split(runner(_stack(pair)), pair)
    except BadInput:  # ONNX Runtime refused the batch (a shape fixed inside the graph)
        return False
    alone = [runner(f) for f in pair]
    return all(set(a) == set(b) and all(np.shape(a[o]) == np.shape(b[o]) and
                                        np.array_equal(np.asarray(a[o]).view(np.uint8), np.asarray(b[o]).view(np.uint8)) for o in a)
               for a, b in zip(alone, batched))
