"""A rewrite proven as a model, not only on the samples: inputs derived from the samples that exercise what the
samples may lack, and the check that the rewritten plan adds no non-finite value on them.

A rewrite is exact in real arithmetic, but its constants and scales were chosen
from the samples' FP32 ranges: a rescaled epsilon that the format loses is
invisible until a row has zero variance, a floor until a frame is silent. The
edge inputs (``edge_inputs``):
- the sample with the largest input |max| (the extreme of the samples' FP32
  range), with every EDGE_ROW_STRIDE-th position (all axes but the last) zero
  and every one halfway between made constant (its own mean): rows of zero
  variance, zero and not, beside the sample's own values;
- every float input zero (silence, padding, an empty cache).
Integer inputs (token ids, lengths) are kept. ``check`` runs the original model
in FP32, the rewritten plan and the plan it is the alternative to (the pins on
the original model) on the engine, and counts the output elements the rewrite
adds: non-finite in the rewritten plan where the original FP32 is finite and the
pins keep them finite. Any such element refuses the rewrite. Where the pins fail
an edge input too, the rewrite is no worse than what replaces it; that count is
kept beside (``alternative``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..backends.reference import ReferenceRunner
from ..core.limits import EDGE_ROW_STRIDE
from ..core.records import Record

log = logging.getLogger("precdoctor")


@dataclass
class EdgeCheck(Record):
    """One edge input run through the rewritten plan."""

    input: str  # how it was derived from the samples
    added: int  # output elements non-finite in the rewritten plan where the original FP32 and the pins are finite
    finite: int  # output elements the original FP32 computes finite
    alternative: int = 0  # output elements non-finite under the pins (on the original model) where FP32 is finite
    skipped: str = ""  # why it was not judged (the original does not run on it)


def _floats(sample: dict) -> list[str]:
    return [k for k, v in sample.items() if np.asarray(v).dtype.kind == "f"]


def _rows(a: np.ndarray) -> np.ndarray:
    if a.ndim < 2 or a.size == 0:
        return a
    rows = a.reshape(-1, a.shape[-1]).copy()
    rows[::EDGE_ROW_STRIDE] = 0.0
    half = rows[EDGE_ROW_STRIDE // 2::EDGE_ROW_STRIDE]
    rows[EDGE_ROW_STRIDE // 2::EDGE_ROW_STRIDE] = half.mean(axis=-1, keepdims=True)
    return rows.reshape(a.shape)


def edge_inputs(samples: list[dict]) -> list[tuple[str, dict]]:
    """(description, feed) per edge input (see the module docstring)."""
    if not samples:
        return []

    def top(s: dict) -> float:
        return max((float(np.max(np.abs(s[k]), initial=0.0)) for k in _floats(s)), default=0.0)

    i = max(range(len(samples)), key=lambda j: top(samples[j]))
    s = samples[i]
    floats = _floats(s)
    if not floats:
        return []
    rows = {k: (_rows(np.asarray(v)) if k in floats else v) for k, v in s.items()}
    zeros = {k: (np.zeros_like(v) if k in floats else v) for k, v in s.items()}
    what = (f"sample {i + 1} (largest input |max| {top(s):.4g}) with every {EDGE_ROW_STRIDE}th row zero and every "
            f"{EDGE_ROW_STRIDE}th + {EDGE_ROW_STRIDE // 2} constant")
    return [(what, rows),
            ("every float input zero", zeros)]


def check(original, rewritten, backend, plan, alternative, edges: list[tuple[str, dict]]) -> list[EdgeCheck]:
    """Each edge input: the original in FP32 against the rewritten graph under ``plan`` and the original under
    ``alternative`` (the pins), on ``backend``."""
    if not edges:
        return []
    reference = ReferenceRunner(original)
    feeds = [f for _, f in edges]
    runner, pins = backend.runner(rewritten, plan, feeds), backend.runner(original, alternative, feeds)
    out = []
    for what, feed in edges:
        try:
            ref = reference(feed)
        except Exception as e:  # noqa: BLE001 - a derived input the model itself rejects (a value-dependent shape) is no verdict
            log.info(f"rewrite: edge input '{what}' not judged: the original model does not run on it ({e})")
            out.append(EdgeCheck(what, 0, 0, skipped=f"the original model does not run on it: {str(e).splitlines()[0][:200]}"))
            continue
        got, alt = runner(feed), pins(feed)
        added = finite = worse = 0
        for name, r in ref.items():
            r, g, a = np.asarray(r), np.asarray(got.get(name)), np.asarray(alt.get(name))
            if r.dtype.kind != "f" or g.shape != r.shape or a.shape != r.shape:
                continue
            ok = np.isfinite(r)
            finite += int(ok.sum())
            added += int((ok & ~np.isfinite(g) & np.isfinite(a)).sum())
            worse += int((ok & ~np.isfinite(a)).sum())
        out.append(EdgeCheck(what, added, finite, worse))
    return out
