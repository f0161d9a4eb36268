"""One ONNX Runtime session computing the FP32 reference, a candidate and per-tensor probes.

Shared by the backends whose candidate is an ONNX graph ONNX Runtime can run
next to the reference: the CPU emulation and ONNX Runtime CUDA.
"""
from __future__ import annotations

import numpy as np

from .. import probe as probes
from ..graph import aliases, concrete_sizes
from . import Probe, ort

MEMORY_BUDGET_GB = 8.0


def _chunks(tensors: list[str], sizes: list[dict], budget_gb: float) -> list[list[str]]:
    """Split probes, in topological order, into passes whose activations (reference + candidate,
    float32, largest sample) fit the budget. ONNX Runtime computes only what a pass asks for, so a
    pass over the first tensors never materializes the later ones."""
    limit = budget_gb * 2**30
    out, cur, used = [], [], 0.0
    for t in tensors:
        b = 8.0 * max((s.get(t, 0) for s in sizes), default=0)
        if cur and used + b > limit:
            out.append(cur)
            cur, used = [], 0.0
        cur.append(t)
        used += b
    return out + [cur] if cur else out


def paired_probe(graph, plan, samples, candidate, cand_order, cand_types=None, providers=None, graph_opt="none",
                 memory_budget_gb: float = MEMORY_BUDGET_GB) -> Probe:
    """Probe every float tensor of ``candidate`` against FP32 in one paired session per stage.

    Stage 1 runs cheap probes; stage 2 re-runs full probes on the tensors
    stage 1 saw go non-finite or out of range (usually few). Reshapes and
    transposes are not probed: they hold their input's values, so they get
    their input's statistics. Past ``memory_budget_gb`` of activations the
    probes run in several passes (each a session of its own: slower, bounded).
    """
    fmt = plan.format
    tensors = graph.float_tensors()
    alias = aliases(graph, tensors)
    probed = [t for t in tensors if t not in alias]
    sizes = [concrete_sizes(graph, feed) for feed in samples]
    known = set.intersection(*(set(s) for s in sizes)) if sizes else set()
    ref_names = [probes.REF_PREFIX + o if o in graph.producer else o for o in graph.outputs]

    def run(subset, full, want_outputs):
        model, pb, stats_name = probes.paired_model(graph, candidate, subset, fmt, cand_types, cand_order, full, known)
        sessions = ort.ShapedSessions(model, providers=providers, graph_opt=graph_opt, lean=True, weights_dir=graph.weights_dir)
        names = (graph.outputs + ref_names if want_outputs else []) + [stats_name]
        per_sample, outs = [], []
        for feed, size in zip(samples, sizes):
            res = ort.run(sessions(feed), feed, names)
            per_sample.append(probes.unpack(res[stats_name].astype(np.float64), pb.names, pb.sized, full, size))
            if want_outputs:
                outs.append(({o: res[r] for o, r in zip(graph.outputs, ref_names)}, {o: res[o] for o in graph.outputs}))
        return per_sample, outs

    passes = _chunks(probed, sizes, memory_budget_gb)
    fast, outs = None, []
    for k, chunk in enumerate(passes):
        part, o = run(chunk, False, k == len(passes) - 1)
        fast = part if fast is None else [np.concatenate([a, b]) for a, b in zip(fast, part)]
        outs = o or outs
    redo = sorted({i for raw in fast for i in range(len(probed)) if probes.needs_full(raw[i], fmt)})
    total = None
    for raw in fast:
        total = probes.combine(total, np.stack([probes.complete_fast(r) for r in raw]))
    notes = [f"probes ran in {len(passes)} passes to stay within {memory_budget_gb} GB of activations"] if len(passes) > 1 else []
    if redo:
        full, _ = run([probed[i] for i in redo], True, False)
        acc = None
        for raw in full:
            acc = probes.combine(acc, raw)
        total[redo] = acc
        notes.append(f"{len(redo)} tensor(s) re-probed in full (non-finite or out of range)")
    row = {t: i for i, t in enumerate(probed)}
    stats = np.stack([total[row[alias.get(t, t)]] for t in tensors])
    return Probe(tensors, stats, outs, notes)
