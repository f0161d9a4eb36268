"""TensorRT through Polygraphy: TensorRT 11 (always strongly typed) and 8.6-10.x (weak or strong).

Written against Polygraphy 0.53's loaders (NetworkFromOnnxPath with
strongly_typed / mark_unfused_tensors_as_debug_tensors, CreateConfig,
EngineFromNetwork, TrtRunner) and TensorRT's documented API. TensorRT cannot
be installed where precdoctor is developed: version detection, layer-name
mapping and configuration choices are tested; building engines is not (see
the README's "Verified where").

- TensorRT 11: the plan's mixed ONNX, strongly typed; per-layer values come
  from debug tensors (``mark_unfused_tensors_as_debug_tensors``), which do
  not break fusions.
- TensorRT <= 10, ``typing="weak"``: the FP32 model with ``--fp16``/``--bf16``,
  layer precisions and output types FP32 for the pins, constraints obeyed;
  ``typing="strong"``: the mixed ONNX, as on TensorRT 11. Per-layer values
  come from marking tensors as outputs, which changes fusions (warned).
After each build the engine inspector's layer information is checked: pins
that landed in FP16/BF16 layers are reported as not honoured.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from ..numerics import probes
from ..core.errors import BadInput
from ..graph.loading import save_model
from ..numerics.mixed import mixed_model
from ..numerics.schema import fp32_nodes
from . import Backend, EngineInfo, Measurement, ort
from .trt_layers import check_pins, nodes_of_layer

log = logging.getLogger("precdoctor")


def tensorrt_version() -> tuple[int, int]:
    try:
        import tensorrt as trt
    except ImportError:
        raise BadInput("--backend trt needs TensorRT's Python package (pip install tensorrt, on a machine with an NVIDIA GPU)") from None
    try:
        major, minor = (int(x) for x in trt.__version__.split(".")[:2])
    except (AttributeError, ValueError):
        raise BadInput(f"cannot read the TensorRT version ({getattr(trt, '__version__', '?')!r})") from None
    if (major, minor) < (8, 6):
        raise BadInput(f"TensorRT {trt.__version__} is too old; precdoctor supports 8.6 and later")
    return major, minor


@dataclass(frozen=True)
class BuildSettings:
    """What to build for a plan on a TensorRT version (pure, tested without TensorRT)."""

    model: str  # "mixed": the plan's mixed ONNX, strongly typed; "fp32": the FP32 model with layer precisions
    strongly_typed: bool | None  # passed to the parser on 8.6-10 only (11 is always strongly typed)
    precision: str | None  # the weak builder's flag ("fp16" / "bf16"), None when the graph carries the types
    layer_precisions: dict[str, str]
    capture: str  # how per-layer values are captured: "unfused-debug" (11), "debug" (10), "outputs" (< 10)

    def network_kwargs(self, debug: bool) -> dict:
        """Keyword arguments for Polygraphy's NetworkFromOnnxPath."""
        kw = {}
        if self.strongly_typed:
            kw["strongly_typed"] = True
        if debug and self.capture == "unfused-debug":
            kw["mark_unfused_tensors_as_debug_tensors"] = True
        return kw

    def config_kwargs(self) -> dict:
        """Keyword arguments for Polygraphy's CreateConfig (besides profiling verbosity)."""
        return {self.precision: True, "precision_constraints": "obey"} if self.precision else {}


def build_settings(version: tuple[int, int], typing: str, precision: str, pins) -> BuildSettings:
    # TensorRT 11 marks unfused tensors as debug tensors without breaking fusions; 10.x has mark_debug per
    # tensor; older ones only network outputs (which break fusions)
    capture = "unfused-debug" if version[0] >= 11 else ("debug" if version[0] == 10 else "outputs")
    if version[0] >= 11 or typing == "strong":
        return BuildSettings("mixed", True if version[0] < 11 else None, None, {}, capture)
    return BuildSettings("fp32", None, precision, {p: "float32" for p in sorted(pins)}, capture)


class TrtBackend(Backend):
    name = "trt"

    def __init__(self, typing: str = "strong"):
        self.version = tensorrt_version()
        self.typing = "strong" if self.version[0] >= 11 else typing
        self.notes: list[str] = []
        self.pin_report: dict | None = None

    def info(self) -> EngineInfo:
        version = ".".join(map(str, self.version))
        return EngineInfo(self.name, f"TensorRT {version} via Polygraphy ({self.typing}ly typed)", tensorrt=version,
                          typing=self.typing, pins_in_engine=self.pin_report.to_json() if self.pin_report else None)

    def _engine(self, graph, plan, tmp: str, debug: bool):
        import tensorrt as trt
        from polygraphy.backend.trt import (CreateConfig, EngineFromNetwork, MarkDebug, ModifyNetworkOutputs, NetworkFromOnnxPath,
                                            PostprocessNetwork)

        s = build_settings(self.version, self.typing, plan.precision, plan.pins)
        if s.model == "mixed":
            path = os.path.join(tmp, "model.mixed.onnx")
            save_model(mixed_model(graph, plan).model, path)
        else:
            path = os.path.join(tmp, "model.onnx")
            save_model(graph.model_with_data(), path)
        network = NetworkFromOnnxPath(path, **s.network_kwargs(debug))
        if debug and s.capture == "debug":
            network = MarkDebug(network, mark_debug=graph.float_tensors())
            self.notes.append("TensorRT 10: tensors marked with mark_debug may not fuse as in the shipped engine")
        elif debug and s.capture == "outputs":
            network = ModifyNetworkOutputs(network, outputs=graph.float_tensors())
            self.notes.append("TensorRT < 10: every tensor is marked as an output, which breaks fusions and can change the numbers")
        if s.layer_precisions:
            topo = [n.name for n in graph.all_nodes()]  # If/Loop body nodes are layers too
            pins = fp32_nodes(graph, plan)  # the schema-forced nodes too, as every artifact pins them

            def pin_layers(net):
                # every layer built from a pinned node (suffixes, fused names) gets FP32 compute and outputs
                for i in range(net.num_layers):
                    layer = net.get_layer(i)
                    if pins.intersection(nodes_of_layer(layer.name, topo)):
                        layer.precision = trt.float32
                        for k in range(layer.num_outputs):
                            layer.set_output_type(k, trt.float32)
                return net

            network = PostprocessNetwork(network, pin_layers, "precdoctor pins")
        config = CreateConfig(profiling_verbosity=trt.ProfilingVerbosity.DETAILED, **s.config_kwargs())
        engine = EngineFromNetwork(network, config=config)()
        self._check_pins(engine, graph, plan)
        return engine

    def _check_pins(self, engine, graph, plan) -> None:
        import json

        import tensorrt as trt

        info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
        layers = [x if isinstance(x, dict) else {"Name": str(x)} for x in info.get("Layers", [])]
        self.pin_report = check_pins(layers, plan.pins, [n.name for n in graph.all_nodes()])
        for bad in self.pin_report.not_honoured:
            msg = f"pin {bad.pin} not honoured: it runs inside low-precision layer(s) {', '.join(bad.layers)}"
            self.notes.append(msg)
            log.warning(msg)

    def runner(self, graph, plan, samples=None):
        from polygraphy.backend.trt import TrtRunner

        with tempfile.TemporaryDirectory(prefix="precdoctor-trt-") as tmp:
            engine = self._engine(graph, plan, tmp, debug=False)
        runner = TrtRunner(engine)
        runner.activate()
        outputs = graph.outputs
        return lambda feed: {k: np.asarray(v) for k, v in runner.infer(feed).items() if k in outputs}

    def measure(self, graph, plan, samples) -> Measurement:
        """Per-tensor statistics from debug tensors (TensorRT >= 10) against the ONNX Runtime FP32 reference."""
        from polygraphy.backend.trt import TrtRunner

        with tempfile.TemporaryDirectory(prefix="precdoctor-trt-") as tmp:
            engine = self._engine(graph, plan, tmp, debug=True)
        wanted = graph.float_tensors()
        ref_model = _with_outputs(graph, wanted)
        ref = ort.session(ref_model, graph_opt="none", weights=graph.store)
        stats, outs = None, []
        with TrtRunner(engine) as runner:
            for feed in samples:
                got = {k: np.asarray(v, np.float32) for k, v in runner.infer(feed).items()}
                names = [t for t in wanted if t in got]
                r = ort.run(ref, feed, names + [o for o in graph.outputs if o not in names])
                raw = np.stack([probes.numpy_stats(r[t], got[t], plan.format) for t in names]) if names else np.zeros((0, probes.K))
                stats = raw if stats is None else probes.combine(stats, raw)
                outs.append(({o: r[o] for o in graph.outputs}, {o: got[o] for o in graph.outputs if o in got}))
        return Measurement(names, stats, outs, self.notes)


def _with_outputs(graph, tensors):
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(graph.model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors if t not in have)
    return m
