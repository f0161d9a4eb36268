"""Probes: graph nodes that reduce a (reference, candidate) tensor pair to a few raw statistics.

The statistics are *raw sums* (counts, maxima, sums of squares) so that they
add up over samples and over chunks, and so that two implementations can
produce them: ``numpy_stats`` on fetched arrays (any backend), and the probe
nodes ``ProbeBuilder`` adds to an ONNX graph, which compute the same vector
inside ONNX Runtime. The in-graph form is what keeps a whole-model comparison
cheap: one run of reference + candidate + probes, and no activation ever
copied out (Polygraphy marks every tensor as an output instead: about 6 GB
and 98 s on a wav2vec2-base). ``backends/paired.py`` builds that graph.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.formats import Format
from ..graph import Namer
from ..core.limits import CLAMP_BAND, PROBE_GROUP

FIELDS = (
    "n", "nonfinite_ref", "nonfinite_cand", "nonfinite_new", "max_abs", "sse", "ssr", "ssc",
    "dot", "ref_absmax", "n_overflow", "n_underflow", "n_saturated",
    "n_zeroed", "n_saturated_pos", "n_clamped",
)
K = len(FIELDS)
_MAX_FIELDS = {FIELDS.index("max_abs"), FIELDS.index("ref_absmax")}
IDX = {f: i for i, f in enumerate(FIELDS)}


def numpy_stats(ref: np.ndarray, cand: np.ndarray, fmt: Format) -> np.ndarray:
    """The raw statistics of one (reference, candidate) pair, as the full in-graph probe computes them."""
    return numpy_stats_many([ref], [cand], fmt)[0]


def numpy_stats_many(refs: list, cands: list, fmt: Format) -> np.ndarray:
    """``numpy_stats`` of many (reference, candidate) pairs at once, [len(refs), K]: one pass over their
    concatenation and per-segment reductions (thousands of small tensors cost one numpy call each otherwise)."""
    sizes = np.array([np.size(r) for r in refs], np.int64)
    out = np.zeros((len(refs), K))
    full = sizes > 0
    if not full.any():
        return out
    r = np.concatenate([np.asarray(x, np.float32).ravel() for x in refs])
    c = np.concatenate([np.asarray(x, np.float32).ravel() for x in cands])
    nr, nc = ~np.isfinite(r), ~np.isfinite(c)
    with np.errstate(invalid="ignore", over="ignore"):
        # saturation: FP32 already beyond the format's range, the candidate the infinity of the same sign; clamped: the
        # candidate a finite value at the format's extreme of the same sign (limits.CLAMP_BAND): neither is an error
        beyond = np.abs(np.where(nr, 0, r)) > fmt.max_finite
        sat = nc & ~nr & np.isinf(c) & beyond & (np.sign(c) == np.sign(r))
        ca = np.abs(np.where(nc, 0, c))
        clamped = ~nr & ~nc & beyond & (ca >= fmt.max_finite * (1 - CLAMP_BAND)) & (ca <= fmt.max_finite) & (np.sign(c) == np.sign(r))
    bad = nr | nc | clamped
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.where(bad, 0, c - r).astype(np.float64)
        rm, cm = np.where(bad, 0, r).astype(np.float64), np.where(bad, 0, c).astype(np.float64)
        absr = np.abs(np.where(nr, 0, r))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[full]
    add = lambda x: np.add.reduceat(x, starts)  # noqa: E731
    top = lambda x: np.maximum.reduceat(x, starts)  # noqa: E731
    cols = [sizes[full], add(nr.astype(np.int64)), add(nc.astype(np.int64)), add((nc & ~nr).astype(np.int64)), top(np.abs(d)),
            add(d * d), add(rm * rm), add(cm * cm), add(rm * cm), top(absr), add((absr > fmt.max_finite).astype(np.int64)),
            add(((absr > 0) & (absr < fmt.min_subnormal / 2)).astype(np.int64)), add(sat.astype(np.int64)),
            add(((c == 0) & ~nr & (absr >= fmt.min_subnormal / 2)).astype(np.int64)), add((sat & (c > 0)).astype(np.int64)),
            add(clamped.astype(np.int64))]
    out[full] = np.stack(cols, axis=1)
    return out


def combine(a: np.ndarray | None, b: np.ndarray, maxima=_MAX_FIELDS) -> np.ndarray:
    """Merge two raw vectors (one more sample): sums add, the fields ``maxima`` take the max."""
    if a is None:
        return b.copy()
    out = a + b
    for i in maxima:
        out[..., i] = np.maximum(a[..., i], b[..., i])
    return out


class ProbeGroups:
    """In-graph probes appended to a derived graph, their vectors concatenated in groups of ``group``.

    Each group is placed right after its last probe and returned as a graph output of its own: one
    Concat of every probe keeps all of them alive to the end, and ONNX Runtime's session start-up
    grows with the square of that (measured: 4,000 probes, 9.6 s; grouped, 0.4 s). ``constants``:
    (key, value, dtype) of the scalars the probes read, named under ``prefix``.
    """

    def __init__(self, namer: Namer, prefix: str, constants, group: int = PROBE_GROUP):
        self.namer, self.prefix, self.group = namer, prefix, group
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.parts: list[str] = []  # probe vectors of the open group
        self.outputs: list[str] = []  # one per closed group
        self.names: list[str] = []
        self.const: dict[str, str] = {}
        for key, value, dtype in constants:
            self.const[key] = namer(f"{prefix}/{key}")
            self.inits.append(numpy_helper.from_array(np.array(value, dtype), self.const[key]))

    def _n(self, op, ins, hint, **kw):
        out = self.namer(hint)
        self.nodes.append(helper.make_node(op, ins, [out], name=out, **kw))
        return out

    def _count(self, mask, p):
        return self._n("ReduceSum", [self._n("Cast", [mask], p + "f", to=TensorProto.FLOAT)], p, keepdims=1)

    def _push(self, vector: str, name: str) -> None:
        self.parts.append(vector)
        self.names.append(name)
        if len(self.parts) >= self.group:
            self.close()

    def close(self) -> None:
        if self.parts:
            self.outputs.append(self._n("Concat", self.parts, f"{self.prefix}/stats", axis=0))
            self.parts = []


class ProbeBuilder(ProbeGroups):
    """Appends probe nodes comparing pairs of float32 tensors; outputs one vector per group of probes.

    ``fast`` probes cost one Sub and a few reductions (which ONNX Runtime runs
    multithreaded); where the sums show Inf/NaN, an If counts the positions
    where either side is not finite, so a candidate full of Inf/NaN is
    measured in the same pass as a healthy one, and a healthy one pays
    nothing for it. A reference that is not finite or leaves the format's range
    tells the caller which tensors need a ``full`` probe: masks, counts of
    non-finite, overflowing and underflowing elements.
    """

    def __init__(self, fmt: Format, namer: Namer, full: bool = True, group: int = PROBE_GROUP):
        super().__init__(namer, "probe", (("zero", 0.0, np.float32), ("fmax", fmt.max_finite, np.float32),
                                          ("tiny", fmt.min_subnormal / 2, np.float32), ("flat", [-1], np.int64),
                                          ("nfmax", -fmt.max_finite, np.float32),
                                          ("big", np.finfo(np.float32).max, np.float32),
                                          ("nbig", -np.finfo(np.float32).max, np.float32),
                                          ("band", fmt.max_finite * (1 - CLAMP_BAND), np.float32)), group)
        self.fmt, self.full = fmt, full
        self.sized: list[bool] = []  # whether each probe's vector carries the element count

    def _sum(self, x, out):
        # no axes: reduces everything in every opset (axes moved to an input at 13)
        return self._n("ReduceSum", [x], out, keepdims=1)

    def _absmax(self, x, p):
        # max(max x, -min x): two reductions and tiny ops, no full-size temporary
        hi = self._n("ReduceMax", [x], p + "hi", keepdims=1)
        lo = self._n("Neg", [self._n("ReduceMin", [x], p + "lo", keepdims=1)], p + "nlo")
        return self._n("Max", [hi, lo], p + "absmax")

    def _size(self, flat, p):
        return self._n("Cast", [self._n("Shape", [flat], p + "shape")], p + "size", to=TensorProto.FLOAT)

    def add(self, label: str, ref: str, cand: str, rank: int | None = None, size_in_graph: bool = True) -> None:
        """Probe one pair. Fast probes on tensors of known rank >= 1 skip flattening: reductions
        keep the rank, the parts are concatenated and reshaped once."""
        p = f"probe/{len(self.names)}/"
        n, k = self._n, self.const
        if self.full or not rank:
            ref = n("Reshape", [ref, k["flat"]], p + "r")
            cand = n("Reshape", [cand, k["flat"]], p + "c")
        parts = self._full(p, ref, cand) if self.full else self._fast(p, ref, cand, size_in_graph)
        cat = n("Concat", parts, p + "cat", axis=0)
        self.sized.append(self.full or size_in_graph)
        self._push(cat if self.full or not rank else n("Reshape", [cat, k["flat"]], p + "stats"), label)

    def _fast(self, p, r, c, size_in_graph):
        """[max|c-r|, sum (c-r)^2, sum r^2, sum c^2, max|r|, positions where r or c is not finite] (+ [size]): FAST_FIELDS."""
        n = self._n
        d = n("Sub", [c, r], p + "d")
        parts = [
            self._absmax(d, p + "d"),
            n("ReduceSumSquare", [d], p + "sse", keepdims=1),
            n("ReduceSumSquare", [r], p + "ssr", keepdims=1),
            n("ReduceSumSquare", [c], p + "ssc", keepdims=1),
            self._absmax(r, p + "r"),
        ]
        parts.append(self._bad_positions(p, d, parts[1]))
        if size_in_graph:  # shape inference could not size it: count in the graph, shaped like the parts
            size = n("Cast", [n("Size", [r], p + "size_i")], p + "size_f", to=TensorProto.FLOAT)
            parts.append(n("Expand", [size, n("Shape", [parts[0]], p + "shape1")], p + "size"))
        return parts

    def _bad_positions(self, p, d, sse):
        """Positions where the reference or the candidate is not finite (d - d is NaN there), counted only when
        the sum of squares says there are some: an If, so a healthy tensor costs no full-size temporaries."""
        zero = self._n("Sub", [sse, sse], p + "sse0")  # 0 when every position is finite, NaN otherwise
        flag = self._n("IsNaN", [zero], p + "any_bad")
        dd, bad, badf, count, none = (self.namer(p + k) for k in ("dd", "bad", "badf", "n_bad", "no_bad"))
        counting = [helper.make_node("Sub", [d, d], [dd], name=dd), helper.make_node("IsNaN", [dd], [bad], name=bad),
                    helper.make_node("Cast", [bad], [badf], name=badf, to=TensorProto.FLOAT),
                    helper.make_node("ReduceSum", [badf], [count], name=count, keepdims=1)]
        branch = lambda nodes, res: helper.make_graph(nodes, self.namer(p + "branch"), [],  # noqa: E731
                                                      [helper.make_tensor_value_info(res, TensorProto.FLOAT, None)])
        return self._n("If", [flag], p + "bad_count", then_branch=branch(counting, count),
                       else_branch=branch([helper.make_node("Identity", [zero], [none], name=none)], none))

    def _full(self, p, rf, cf):
        n, k = self._n, self.const
        nr = n("IsNaN", [n("Sub", [rf, rf], p + "rr")], p + "nr")
        nc = n("IsNaN", [n("Sub", [cf, cf], p + "cc")], p + "nc")
        absr = n("Abs", [n("Where", [nr, k["zero"], rf], p + "rfin")], p + "absr")
        cabs = n("Abs", [n("Where", [nc, k["zero"], cf], p + "cfin0")], p + "cabs")
        held = n("And", [n("Not", [n("Less", [cabs, k["band"]], p + "cband")], p + "inband"),
                         n("Not", [n("Greater", [cabs, k["fmax"]], p + "cover")], p + "infmt")], p + "held")
        clamped = n("And", [n("And", [n("Greater", [absr, k["fmax"]], p + "rbeyond"), held], p + "beyondheld"),
                            n("Greater", [n("Mul", [rf, cf], p + "rxc"), k["zero"]], p + "samesign")], p + "clamped")
        bad = n("Or", [n("Or", [nr, nc], p + "nonfin"), clamped], p + "bad")
        new = n("And", [nc, n("Not", [nr], p + "notnr")], p + "new")
        d = n("Where", [bad, k["zero"], n("Sub", [cf, rf], p + "d0")], p + "d")
        rm = n("Where", [bad, k["zero"], rf], p + "rm")
        cm = n("Where", [bad, k["zero"], cf], p + "cm")
        under = n("And", [n("Less", [absr, k["tiny"]], p + "lt"), n("Greater", [absr, k["zero"]], p + "gt0")], p + "under")
        # saturation: +inf where FP32 > max finite, -inf where FP32 < -max finite (comparisons, not IsInf: opset 9 too)
        pos = n("And", [n("Greater", [cf, k["big"]], p + "cinf"), n("Greater", [rf, k["fmax"]], p + "rhi")], p + "satp")
        neg = n("And", [n("Less", [cf, k["nbig"]], p + "cninf"), n("Less", [rf, k["nfmax"]], p + "rlo")], p + "satn")
        sat = n("And", [new, n("Or", [pos, neg], p + "satpn")], p + "sat")
        # zeroed: 0 where FP32 holds a value the format would keep nonzero (x / inf = 0: a saturation that changed something)
        # (c == 0 as neither > 0 nor < 0 nor NaN: Equal takes no floats before opset 11)
        c0 = n("Not", [n("Or", [n("Greater", [cf, k["zero"]], p + "cpos"), n("Less", [cf, k["zero"]], p + "cneg")], p + "cnz")], p + "c0")
        c0 = n("And", [c0, n("Not", [nc], p + "cfin")], p + "c0fin")
        zeroed = n("And", [c0, n("Not", [n("Less", [absr, k["tiny"]], p + "small")], p + "kept")], p + "zeroed")
        return [
            self._size(rf, p), self._count(nr, p + "n_nr"), self._count(nc, p + "n_nc"), self._count(new, p + "n_new"),
            n("ReduceMax", [n("Abs", [d], p + "absd")], p + "maxd", keepdims=1),
            n("ReduceSumSquare", [d], p + "sse", keepdims=1),
            n("ReduceSumSquare", [rm], p + "ssr", keepdims=1),
            n("ReduceSumSquare", [cm], p + "ssc", keepdims=1),
            self._sum(n("Mul", [rm, cm], p + "rc"), p + "dot"),
            n("ReduceMax", [absr], p + "maxr", keepdims=1),
            self._count(n("Greater", [absr, k["fmax"]], p + "over"), p + "n_over"),
            self._count(under, p + "n_under"),
            self._count(sat, p + "n_sat"),
            self._count(n("And", [zeroed, n("Not", [nr], p + "fin")], p + "zeroedf"), p + "n_zeroed"),
            self._count(n("And", [sat, pos], p + "satpos"), p + "n_satpos"),
            self._count(clamped, p + "n_clamped"),
        ]

    def finish(self) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], list[str]]:
        """All probe nodes, their constants, and the group outputs (read them with ``unpack``)."""
        self.close()
        return self.nodes, self.inits, self.outputs


FAST_FIELDS = ("max_abs", "sse", "ssr", "ssc", "ref_absmax", "nonfinite_cand")  # the last: positions where either is not finite


def unpack(groups: list[np.ndarray], names: list[str], sized: list[bool], full: bool, sizes: dict[str, float]) -> np.ndarray:
    """Split the probe outputs (one array per group, in order) into one K-vector per tensor (fast probes:
    unknown fields -1)."""
    flat = np.concatenate([np.asarray(g, np.float64).reshape(-1) for g in groups]) if groups else np.zeros(0)
    out = np.full((len(names), K), -1.0)
    pos = 0
    for i, (name, has_n) in enumerate(zip(names, sized)):
        if full:
            out[i] = flat[pos : pos + K]
            pos += K
            continue
        width = len(FAST_FIELDS) + (1 if has_n else 0)
        vals = flat[pos : pos + width]
        pos += width
        for f, v in zip(FAST_FIELDS, vals):
            out[i, IDX[f]] = v
        out[i, IDX["n"]] = vals[-1] if has_n else sizes[name]
    return out


def needs_full(raw: np.ndarray, fmt: Format) -> bool:
    """A fast probe whose reference is not finite or leaves the format's range (a candidate that is not
    finite is measured by the fast probe itself)."""
    ref = raw[[IDX["ssr"], IDX["ref_absmax"]]]
    return not np.all(np.isfinite(ref)) or raw[IDX["ref_absmax"]] > fmt.max_finite


def complete_fast(raw: np.ndarray) -> np.ndarray:
    """Fill the fields a fast probe leaves unknown, for a tensor whose reference is finite and in range:
    every position it counted as not finite is new in the candidate. The error sums over the positions
    finite in both are not known when the candidate is not finite (NaN then)."""
    out = raw.copy()
    bad = raw[IDX["nonfinite_cand"]]
    out[IDX["nonfinite_ref"]] = 0.0
    out[IDX["nonfinite_new"]] = bad
    out[IDX["n_overflow"]] = 0.0
    out[IDX["n_saturated"]] = out[IDX["n_saturated_pos"]] = out[IDX["n_clamped"]] = 0.0  # nothing of FP32 beyond the range
    with np.errstate(invalid="ignore"):
        out[IDX["dot"]] = (raw[IDX["ssr"]] + raw[IDX["ssc"]] - raw[IDX["sse"]]) / 2
    if bad:  # the sums ran over every position; the error is defined over those finite in both
        for f in ("sse", "ssr", "ssc", "dot", "max_abs"):
            out[IDX[f]] = np.nan
    out[IDX["n_underflow"]] = np.nan  # not measured on the fast path
    out[IDX["n_zeroed"]] = np.nan  # not measured: a tensor fed by one out of range is re-probed in full (paired.py)
    return out
