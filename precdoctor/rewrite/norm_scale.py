"""Decomposed LayerNorm / RMSNorm whose squares leave the format: scale before squaring.

``a / sqrt(mean(a^2) + eps)`` is unchanged when ``a`` is scaled by s = 2^k
before the square and the mean of squares scaled back by s^-2 (``variance
kept``: eps and the division untouched; the variance itself must fit), or
when the scaled ``a`` is also the numerator and eps becomes eps * s^2
(``variance scaled``: nothing of size var is ever formed). Powers of two
are exact in binary floating point (away from the subnormal range), so the
FP32 model computes the same bits up to the rounding order of the sums. k
is chosen from the FP32 |max| of ``a`` on the samples with ``HEADROOM``:
the squares stay finite until the inputs grow that much past what was seen.
Valid at any opset, built from the ops the pattern already uses. Where the
variance is scaled, eps * s^2 must be a constant the engine's conversion
holds (a Cast makes 1e-5 * 2^-10 = 9.77e-9 zero in FP16, and a zero-variance
row then gives 0/0): a larger s is taken, giving up headroom down to
MIN_HEADROOM; where none holds epsilon, the rewrite is refused and says why.

Where the opset allows (17+), a LayerNorm can instead be fused into
``LayerNormalization``: offered as an alternative, since how it computes in
FP16 belongs to the engine (TensorRT's INormalizationLayer and ONNX Runtime
CUDA compute in FP32 inside; an engine building it from FP16 primitives
overflows just the same).
"""
from __future__ import annotations

import math

import numpy as np

from ..graph import const_array
from ..core.limits import MIN_HEADROOM, UNDERFLOW_SHARE
from .core import HEADROOM, Candidate, Context, Editor, Rewrite, ScaledTensor, describe, pow2_exponent
from .structure import NormSite, norm_sites, reduce_axes

FUSION_OPSET = 17  # LayerNormalization entered the default domain at opset 17
ENGINE_NOTE = ("LayerNormalization's internal precision belongs to the engine: TensorRT's INormalizationLayer (8.6+) and ONNX "
               "Runtime CUDA compute it in FP32 inside by default; an engine that builds it from FP16 primitives overflows as before")


def _exponent(ctx: Context, site: NormSite) -> int | None:
    """k for s = 2^k, or None where scaling has nothing to fix: the squares neither overflow within the headroom
    nor flush to zero."""
    amax = ctx.max_of(site.a)
    if not amax or not math.isfinite(amax):
        return None
    k = pow2_exponent(math.sqrt(ctx.fmt.max_finite), HEADROOM * amax)
    if k < 0:
        return k
    sq = ctx.ranges.get(site.square.output[0])
    if k > 0 and sq is not None and sq.share(sq.underflow) > UNDERFLOW_SHARE:
        return k
    return None


def _keep_variance(ctx: Context, site: NormSite, k: int) -> bool:
    """Scale the mean of squares back (epsilon untouched) where the variance fits with the squares' headroom; else
    divide the scaled value by the scaled root, unless epsilon * s^2 would vanish in the format while the variance
    fits with a linear headroom (a zero row would then give 0/0)."""
    v = ctx.max_of(site.mean.output[0])
    if v is None:
        return False
    if v * HEADROOM ** 2 <= ctx.fmt.max_finite:
        return True
    vanishes = site.eps > 0 and not ctx.holds(site.eps * 4.0 ** k)
    return vanishes and v * HEADROOM <= ctx.fmt.max_finite


def _holding_epsilon(ctx: Context, site: NormSite, k: int) -> tuple[int | None, str]:
    """k, or where the variance is scaled and epsilon * 4^k is lost in the format, the largest power of two below it
    (squares down to MIN_HEADROOM) whose epsilon the format holds; None with the reason where none does."""
    if _keep_variance(ctx, site, k) or not site.eps > 0 or ctx.held(site.eps * 4.0 ** k) or not ctx.held(site.eps):
        return k, ""
    amax = ctx.max_of(site.a)
    top = pow2_exponent(math.sqrt(ctx.fmt.max_finite), MIN_HEADROOM * amax)
    for j in range(k + 1, min(top, -1) + 1):
        if ctx.held(site.eps * 4.0 ** j) and not _keep_variance(ctx, site, j):
            return j, (f"; 2^{k} would make epsilon * 2^{2 * k} = {site.eps * 4.0 ** k:.3g}, which is "
                       f"{ctx.holds(site.eps * 4.0 ** k):.3g} in {ctx.fmt.name} ({ctx.constants}), so 2^{j} is used (headroom "
                       f"down from {HEADROOM:g}x, at least {MIN_HEADROOM:g}x)")
    return None, (f"epsilon * 2^{2 * k} = {site.eps * 4.0 ** k:.3g} is {ctx.holds(site.eps * 4.0 ** k):.3g} in {ctx.fmt.name} "
                  f"({ctx.constants}): a zero-variance row would give 0/0; no power of two keeps the squares finite with "
                  f"{MIN_HEADROOM:g}x headroom (|max| {amax:.4g}) and holds epsilon {site.eps:g}, and the variance "
                  f"({ctx.max_of(site.mean.output[0]) or 0:.4g}) does not fit unscaled")


def _apply(site: NormSite, k: int, keep_variance: bool, rec: Rewrite):
    s = 2.0 ** k

    def edit(ed: Editor) -> None:
        scope = site.square.name.rsplit("/", 1)[0] if "/" in site.square.name else site.square.name
        a2 = ed.pow2(site.a, k, f"{scope}/Prescale")
        ed.rewire(site.square.name, site.a, a2)
        sq, var = site.square.output[0], site.mean.output[0]
        sq2, var2 = ed.tensor(f"{sq}_scaled"), ed.tensor(f"{var}_scaled")
        ed.rename(sq, sq2)
        ed.rename(var, var2)
        rec.scaled = [ScaledTensor(sq, sq2, s * s), ScaledTensor(var, var2, s * s)]
        if keep_variance:
            ed.pow2(var2, -2 * k, f"{scope}/Unscale", output=var)
            ed.rewire(site.add.name, var2, var)
            return
        for n in site.combine:
            ed.rewire(n.name, site.a, a2)
        ed.node(site.add.name).input[site.eps_input] = ed.const(site.eps * s * s, f"{scope}/eps_scaled", source=site.eps)
        for t, f in ((site.add.output[0], s * s), (site.root.output[0], s ** (-1 if site.root.op_type == "Pow" else 1))):
            ed.rename(t, new := ed.tensor(f"{t}_scaled"))
            rec.scaled.append(ScaledTensor(t, new, f))

    return edit


def _record(ctx: Context, site: NormSite, k: int, keep_variance: bool, why_k: str = "") -> Rewrite:
    s, fmt = 2.0 ** k, ctx.fmt
    what, name = ("LayerNorm", "x - mean") if site.kind == "layernorm" else ("RMSNorm", "x")
    amax = ctx.max_of(site.a)
    if keep_variance:
        how = f"the mean of squares scaled back by 2^{-2 * k}; epsilon and the division untouched"
        kept = [site.mean.output[0], site.add.output[0], site.root.output[0], site.output]
    else:
        how = f"the scaled value divided by sqrt(variance * 2^{2 * k} + epsilon * 2^{2 * k}) (the variance would leave {fmt.name} within the headroom)"
        kept = [site.output]
    grow = "overflow" if k < 0 else "flush to zero"
    if not keep_variance and site.eps > 0 and ctx.holds(site.eps * s * s) != np.float32(site.eps * s * s):
        how += f"; epsilon * 2^{2 * k} = {site.eps * s * s:.3g} is {ctx.holds(site.eps * s * s):.3g} in {fmt.name}"
    note = (f"FP32 |max| of {site.a} on the samples: {amax:.4g}, so its square reaches {amax * amax:.4g} "
            f"(largest finite {fmt.name}: {fmt.max_finite:.6g}); with 2^{k} the squares {grow} no more until the input grows "
            f"{math.sqrt(fmt.max_finite) / (amax * s) if why_k else HEADROOM:.3g}x past that{why_k}")
    nodes = [n.name for n in site.nodes]
    return Rewrite(f"norm-scale:{site.square.name}:2^{k}", "norm-scale", site.square.name, nodes,
                   f"{what}: {name} scaled by 2^{k} before squaring; {how}",
                   True, kept, [], describe(ctx.graph, nodes), note=note, params={"exponent": float(k)})


def _fusion(ctx: Context, site: NormSite) -> Candidate | None:
    """The LayerNorm fused into one LayerNormalization (opset 17+, last axis, constant gamma/beta)."""
    g = ctx.graph
    if site.kind != "layernorm" or g.opset < FUSION_OPSET or site.root.op_type != "Sqrt" or len(site.combine) != 1:
        return None
    rank = g.ranks.get(site.x)
    axes = [reduce_axes(g, n)[0] for n in (site.center[0], site.mean)]
    if rank is None or any(a is None or len(a) != 1 or a[0] % rank != rank - 1 for a in axes):
        return None
    tail, extra = site.output, []
    affine = {}
    for op in ("Mul", "Add"):  # gamma, then beta: constant vectors over the last axis
        readers = g.readers(tail)
        if len(readers) != 1 or readers[0].op_type != op or tail in g.outputs:
            break
        other = [i for i in readers[0].input if i != tail]
        value = const_array(g, other[0]) if len(other) == 1 else None
        if value is None or value.ndim > 1:
            break
        affine[op], tail = (other[0], value), readers[0].output[0]
        extra.append(readers[0])
    if "Mul" not in affine:
        return None  # LayerNormalization needs a scale of the normalized axis' size; the pattern gives none to take it from
    nodes = [n.name for n in site.nodes + extra]

    def edit(ed: Editor) -> None:
        ed.drop(*nodes)
        scale = affine["Mul"][0] if affine["Mul"][1].ndim == 1 else ed.const(affine["Mul"][1].reshape(-1), f"{site.square.name}/gamma")
        ins = [site.x, scale] + ([affine["Add"][0]] if "Add" in affine else [])
        ed.op("LayerNormalization", ins, site.center[1].name.rsplit("/", 1)[0] + "/LayerNormalization", output=tail,
              axis=-1, epsilon=float(site.eps))

    rec = Rewrite(f"layernorm-fusion:{site.square.name}", "layernorm-fusion", site.square.name, nodes,
                  "LayerNorm fused into one LayerNormalization op", True, [tail], [], describe(g, nodes), note=ENGINE_NOTE)
    return Candidate(rec, edit, frozenset(nodes))


def find(ctx: Context) -> list[Candidate]:
    out = []
    for site in norm_sites(ctx.graph):
        nodes = {n.name for n in site.nodes}
        if not nodes & ctx.culprits:
            continue
        k = _exponent(ctx, site)
        if k is None:
            continue
        k, why = _holding_epsilon(ctx, site, k)
        if k is None:
            ctx.refused[f"norm-scale:{site.square.name}"] = why
            continue
        keep = _keep_variance(ctx, site, k)
        touched = {site.square.name, site.mean.name, site.add.name} | ({n.name for n in site.combine} if not keep else set())
        rec = _record(ctx, site, k, keep, why)
        c = Candidate(rec, _apply(site, k, keep, rec), frozenset(touched))
        c.alternative = _fusion(ctx, site)
        out.append(c)
    return out
