"""CPU emulation of FP16/BF16: the rounded FP32 graph of emulate.py on ONNX Runtime CPU."""
from __future__ import annotations

import numpy as np

from .. import probe as probes
from ..emulate import PROFILES, emulation_model
from . import Backend, Probe, ort


class EmulationBackend(Backend):
    name = "emulate"

    def __init__(self, profile: str = "fused"):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}")
        self.profile = profile

    def describe(self) -> dict:
        return {"backend": self.name, "profile": self.profile, "engine": "onnxruntime CPU, rounded FP32 graph"}

    def runner(self, graph, plan):
        sess = ort.session(emulation_model(graph, plan, self.profile))
        outputs = graph.outputs
        return lambda feed: ort.run(sess, feed, outputs)

    def probe(self, graph, plan, samples) -> Probe:
        cand = emulation_model(graph, plan, self.profile)
        tensors = graph.float_tensors()
        model, labels, stats_name = probes.paired_model(graph, cand, tensors, plan.format)
        sess = ort.session(model)
        ref_names = [probes.REF_PREFIX + o if o in {t for n in graph.nodes for t in n.output} else o for o in graph.outputs]
        total = None
        outs = []
        for feed in samples:
            res = ort.run(sess, feed, graph.outputs + ref_names + [stats_name])
            raw = res[stats_name].astype(np.float64).reshape(len(labels), probes.K)
            total = probes.combine(total, raw)
            outs.append(({o: res[r] for o, r in zip(graph.outputs, ref_names)}, {o: res[o] for o in graph.outputs}))
        return Probe(labels, total, outs)
