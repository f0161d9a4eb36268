"""A residual stream that overflows before its normalizations: carry it scaled by a power of two.

The stream (Add/Sub nodes and the reshapes between them) is homogeneous:
scale every term entering it by s = 2^k and every tensor of it holds s times
its value. Its readers are normalizations, invariant to the scale once their
epsilon is scaled by s^2 (LN(s x; s^2 eps) = LN(x; eps), RMSNorm alike), so
nothing outside the stream changes. Terms entering the stream are scaled
where it costs nothing (a constant, the constant of a Mul, the weights of a
MatMul) and by one Mul otherwise; a reader that is no normalization gets the
value back by one Mul by 1/s (only where that value fits the format). k comes
from the largest FP32 |value| of the stream on the samples, with HEADROOM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from onnx import helper

from ..graph import const_array
from .core import HEADROOM, Candidate, Context, Editor, Rewrite, ScaledTensor, describe, pow2_exponent
from .structure import NormSite, norm_sites

STREAM = frozenset({"Add", "Sub"})
ALIAS = frozenset({"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"})
INVARIANT = frozenset({"LayerNormalization", "InstanceNormalization"})  # fused norms: scale-invariant with eps * s^2
DEFAULT_EPSILON = 1e-5  # LayerNormalization's and InstanceNormalization's epsilon when the attribute is absent
REGION_LIMIT = 512  # tensors one stream may hold before the search gives up (a runaway region is no residual stream)


FUSED_NOTE = ("; a fused normalization reading the stream computes in FP32 inside on TensorRT's INormalizationLayer and ONNX "
              "Runtime CUDA (emulation profile fused); for an engine building it from FP16 primitives, profile strict picks a "
              "smaller scale that keeps its squares finite too")


class NotHomogeneous(Exception):
    """The region reached something that does not carry a scale through."""


@dataclass
class Region:
    tensors: list[str] = field(default_factory=list)  # carry the scale
    entries: dict[str, set[str]] = field(default_factory=dict)  # tensor entering -> the region nodes reading it
    folded: dict[tuple[str, int], str] = field(default_factory=dict)  # (node, input) constant scaled in place
    norms: dict[str, object] = field(default_factory=dict)  # norm node or site output -> node / NormSite
    exits: dict[str, set[str]] = field(default_factory=dict)  # region tensor -> readers that get it unscaled


class _Grow:
    def __init__(self, ctx: Context):
        self.ctx, self.g, self.r = ctx, ctx.graph, Region()
        self.sites = {s.x: s for s in norm_sites(ctx.graph)}
        self.seen: set[str] = set()

    def fits(self, t: str) -> bool:
        m = self.ctx.max_of(t)
        return m is not None and m <= self.ctx.fmt.max_finite

    def run(self, seed: str) -> Region:
        todo = [seed]
        self.seen.add(seed)
        while todo:
            t = todo.pop()
            if t in self.g.outputs or len(self.seen) > REGION_LIMIT:
                raise NotHomogeneous(t)
            self.r.tensors.append(t)
            for nxt in self.producer(t) + self.readers(t):
                if nxt not in self.seen:
                    self.seen.add(nxt)
                    todo.append(nxt)
        return self.r

    def producer(self, t: str) -> list[str]:
        """The region grows up through Add/Sub/reshapes; a Mul by a constant or a MatMul on constant weights ends it."""
        p, more = self.g.producer.get(t), []
        if p is None:
            raise NotHomogeneous(t)
        floats = [(k, i) for k, i in enumerate(p.input) if i and self.g.is_float(i)]
        if p.op_type in STREAM or p.op_type in ALIAS:
            for k, i in floats[: 1 if p.op_type in ALIAS else 2]:
                if i in self.seen:
                    continue
                if const_array(self.g, i) is not None:
                    self.r.folded[(p.name, k)] = i
                elif self.fits(i):  # scaled after the format computed it: it only has to fit
                    self.r.entries.setdefault(i, set()).add(p.name)
                else:
                    more.append(i)
            return more
        const = [(k, i) for k, i in floats if const_array(self.g, i) is not None]
        if p.op_type in ("Mul", "MatMul") and len(const) == 1 and len(floats) == 2 and (p.op_type == "Mul" or const[0][0] == 1):
            self.r.folded[(p.name, const[0][0])] = const[0][1]
            return []
        raise NotHomogeneous(t)

    def readers(self, t: str) -> list[str]:
        more = []
        site = self.sites.get(t)
        for c in self.g.readers(t):
            if c.output and c.output[0] in self.seen:
                continue  # carries the scale on
            if site is not None and c.name in {n.name for n in site.center + [site.square] + site.combine}:
                self.r.norms[site.output] = site
            elif c.op_type in INVARIANT and c.input[0] == t:
                self.r.norms[c.output[0]] = c
            elif (c.op_type in STREAM or c.op_type in ALIAS) and (not self.fits(t) or not self.fits(c.output[0])):
                more.append(c.output[0])
            elif self.fits(t):
                self.r.exits.setdefault(t, set()).add(c.name)
            else:
                raise NotHomogeneous(t)
        return more


def _scope(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else name


def _edit(ctx: Context, r: Region, k: int, rec: Rewrite):
    s = 2.0 ** k

    def edit(ed: Editor) -> None:
        for (node, pos), c in r.folded.items():
            ed.node(node).input[pos] = ed.const(const_array(ctx.graph, c) * s, f"{c}_scaled", source=const_array(ctx.graph, c))
        for t, readers in r.entries.items():
            m = ed.pow2(t, k, f"{_scope(t)}/EnterStream")
            for n in readers:
                ed.rewire(n, t, m)
        new = {t: ed.tensor(f"{t}_scaled") for t in r.tensors}
        for t in r.tensors:
            ed.rename(t, new[t])
        rec.scaled = [ScaledTensor(t, new[t], s) for t in r.tensors]
        for t, readers in r.exits.items():
            ed.pow2(new[t], -k, f"{_scope(t)}/LeaveStream", output=t)
            for n in readers:
                ed.rewire(n, new[t], t)
        for norm in r.norms.values():
            _scale_epsilon(ed, norm, s * s)

    return edit


def _scale_epsilon(ed: Editor, norm, factor: float) -> None:
    if isinstance(norm, NormSite):
        ed.node(norm.add.name).input[norm.eps_input] = ed.const(norm.eps * factor, f"{norm.add.name}/eps_scaled", source=norm.eps)
        return
    node = ed.node(norm.name)
    eps = next((a for a in node.attribute if a.name == "epsilon"), None)
    if eps is None:
        node.attribute.append(helper.make_attribute("epsilon", DEFAULT_EPSILON * factor))
    else:
        eps.f = eps.f * factor


def _record(ctx: Context, node, r: Region, k: int) -> tuple[Rewrite, frozenset]:
    top = max(ctx.max_of(x) or 0.0 for x in r.tensors)
    producers = [ctx.graph.producer[x].name for x in r.tensors]
    norm_nodes = [n for v in r.norms.values() for n in ([x.name for x in v.nodes] if isinstance(v, NormSite) else [v.name])]
    nodes = list(dict.fromkeys(producers + [n for n, _ in r.folded] + norm_nodes))
    rec = Rewrite(f"residual-scale:{node.name}:2^{k}", "residual-scale", node.name, nodes,
                  f"the stream through {len(r.tensors)} tensor(s) carried scaled by 2^{k}; {len(r.norms)} normalization(s) "
                  f"read it with epsilon * 2^{2 * k}; {len(r.entries)} term(s) enter by a Mul, {len(r.folded)} constant(s) scaled"
                  + (f", {len(r.exits)} tensor(s) leave by a Mul" if r.exits else ""),
                  True, list(r.norms) + list(r.exits), [], describe(ctx.graph, nodes),
                  note=f"FP32 |max| of the stream on the samples: {top:.4g} (largest finite {ctx.fmt.name}: "
                       f"{ctx.fmt.max_finite:.6g}); 2^{k} keeps it finite until it grows {HEADROOM:g}x past that"
                       + ("" if ctx.primitive_norms or all(isinstance(v, NormSite) for v in r.norms.values()) else FUSED_NOTE),
                  params={"exponent": float(k)})
    touched = producers + [n for n, _ in r.folded] + [v.add.name if isinstance(v, NormSite) else v.name for v in r.norms.values()]
    return rec, frozenset(touched)


def _exponent(ctx: Context, r: Region) -> int:
    """The stream fits with HEADROOM, and so do the squares of the decomposed norms reading it; a fused norm's
    inside is the engine's, bounded too where the engine builds it from primitives (|x - mean| <= 2 max |x|)."""
    top = max(ctx.max_of(x) or 0.0 for x in r.tensors)
    k = pow2_exponent(ctx.fmt.max_finite, HEADROOM * top)
    for norm in r.norms.values():
        a = ctx.max_of(norm.a) if isinstance(norm, NormSite) else (2 * top if ctx.primitive_norms else None)
        if a:
            k = min(k, pow2_exponent(math.sqrt(ctx.fmt.max_finite), HEADROOM * a))
    return k


def find(ctx: Context) -> list[Candidate]:
    out, done = [], set()
    for node in ctx.graph.nodes:
        t = node.output[0] if node.output else None
        m = ctx.max_of(t) if t else None
        if node.op_type not in STREAM or m is None or m <= ctx.fmt.max_finite or t in done:
            continue
        if not ({node.name} | {c.name for c in ctx.graph.readers(t)}) & ctx.culprits:
            continue
        try:
            r = _Grow(ctx).run(t)
        except NotHomogeneous:
            continue
        done.update(r.tensors)
        k = _exponent(ctx, r)
        rec, touched = _record(ctx, node, r, k)
        out.append(Candidate(rec, _edit(ctx, r, k, rec), touched))
    return out
