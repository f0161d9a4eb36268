"""What a model or a sample may ask for, checked before any work: nodes, constant Loop trip counts, tensor sizes.

Each limit is limits.py's (``limit(NAME)``, raisable by ``PRECDOCTOR_<NAME>``); past one, the run is refused in
one line that says what asked for how much and how to raise it, instead of minutes of silent work, an
allocation failure inside ONNX Runtime or a process killed for its memory.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import BadInput
from ..core.limits import limit, raise_hint
from .attributes import attr, const_scalar
from .shapes import concrete_sizes
from .view import GraphView


def _stops_itself(body) -> bool:
    """Whether a Loop body's condition output may turn false: anything but the condition passed through
    unchanged, or a constant."""
    if len(body.input) < 2 or not body.output:
        return True
    cond_in, cond_out = body.input[1].name, body.output[0].name
    if cond_out == cond_in:
        return False
    producer = next((n for n in body.node if cond_out in n.output), None)
    if producer is None:
        return True
    if producer.op_type == "Identity" and list(producer.input) == [cond_in]:
        return False
    return producer.op_type != "Constant"  # a constant condition: true runs every trip, false stops after the first


def check_graph(graph: GraphView, where: str) -> None:
    """Refuse a Loop that must run more than MAX_LOOP_TRIPS times."""
    trips = limit("MAX_LOOP_TRIPS")
    for n in graph.nodes:
        if n.op_type != "Loop" or not n.input or not n.input[0]:
            continue
        m = const_scalar(graph, n.input[0])
        body = attr(n, "body")
        if m is None or m <= trips or body is None or _stops_itself(body):
            continue
        cond = const_scalar(graph, n.input[1]) if len(n.input) > 1 and n.input[1] else 1.0
        if cond == 0:
            continue
        raise BadInput(f"Loop {n.name!r} of {where} runs {m:.0f} iterations (a constant trip count its condition "
                       f"cannot stop), past the limit of {trips:.0f}; {raise_hint('MAX_LOOP_TRIPS')}")


def check_sizes(graph: GraphView, samples: list[dict]) -> None:
    """Refuse samples on which a tensor of the model (by shape inference) would hold more than MAX_TENSOR_ELEMENTS
    elements. The sample with the most input elements is the one inferred: the others' tensors are rarely larger,
    and one inference per clip length would cost a dataset of varied clips more than the check is worth."""
    if not samples:
        return
    biggest = max(samples, key=lambda s: sum(int(np.size(v)) for v in s.values()))
    most = limit("MAX_TENSOR_ELEMENTS")
    for name, size in concrete_sizes(graph, biggest).items():
        if size > most:
            raise BadInput(f"tensor {name!r} would hold {size} elements on these inputs, past the limit of {most:.0f} "
                           f"per tensor; give smaller inputs or {raise_hint('MAX_TENSOR_ELEMENTS')}")
