"""Acceptance criteria: when does a precision plan count as fixed?

Syntax (repeatable ``--accept``, all must hold on every sample)::

    finite                      no Inf/NaN where FP32 is finite
    finite-inside               no new Inf/NaN in any tensor inside the graph either (see below)
    max-abs<=X  rel-l2<=X  cosine>=X  argmax-agreement>=X
    OUTPUT:max-abs<=X           only for graph output OUTPUT
    wer<=+X                     task metric (absolute WER over FP32); needs --task/--data
    token-agreement>=X          task metric of a decode loop (Whisper): the share of FP32's decode steps the
                                plan's own decode reproduces before it first departs; 1 = every clip identical

Output criteria are cheap and judge a plan from its graph outputs; task
criteria (registered by tasks) and ``finite-inside`` (every tensor compared)
are expensive and confirm a plan at the end. ``finite-inside`` is part of
every acceptance unless the user opts out (``--allow-internal-nonfinite``): a
plan whose outputs pass while an Inf is born inside passes by luck (x/inf = 0).

Where FP32 itself is non-finite, the candidate agrees by holding the same value
(the same infinity, or NaN); anything else there is an infinite error.
Thresholds are checked for range before any work (rel-l2<=-1 can never hold).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import BadInput
from ..core.limits import DEFAULT_ACCEPT
from ..core.records import Record

_RX = re.compile(r"^(?:(?P<output>.+):)?(?P<metric>[a-z0-9-]+)\s*(?:(?P<op><=|>=)\s*(?P<plus>\+)?(?P<value>[-+0-9.eE]+|inf))?$")
_OUTPUT_METRICS = {"finite": None, "max-abs": "<=", "rel-l2": "<=", "cosine": ">=", "argmax-agreement": ">="}
TASK_METRICS = {"wer": "<=", "cer": "<=", "token-agreement": ">="}
INSIDE = "finite-inside"
_RANGES = {"max-abs": (0.0, math.inf), "rel-l2": (0.0, math.inf), "cosine": (-1.0, 1.0), "argmax-agreement": (0.0, 1.0),
           "wer": (0.0, math.inf), "cer": (0.0, math.inf), "token-agreement": (0.0, 1.0)}
_FLOAT_ONLY = {"finite", "max-abs", "rel-l2", "cosine"}


@dataclass(frozen=True)
class Criterion:
    metric: str
    op: str | None = None
    value: float = 0.0
    output: str | None = None
    relative: bool = False  # "+X": over the FP32 value of the same metric

    @property
    def is_task(self) -> bool:
        return self.metric in TASK_METRICS

    @property
    def is_inside(self) -> bool:
        return self.metric == INSIDE

    @property
    def is_output(self) -> bool:
        return not self.is_task and not self.is_inside

    def text(self) -> str:
        s = (f"{self.output}:" if self.output else "") + self.metric
        if self.op:
            s += f"{self.op}{'+' if self.relative else ''}{self.value:g}"
        return s

    def holds(self, measured: float) -> bool:
        if self.metric in ("finite", INSIDE):
            return measured == 0
        if measured is None or math.isnan(measured):
            return False
        return measured <= self.value if self.op == "<=" else measured >= self.value


def parse(specs: list[str] | tuple[str, ...]) -> list[Criterion]:
    out = []
    for spec in specs or DEFAULT_ACCEPT:
        m = _RX.match(spec.strip())
        if not m:
            raise BadInput(f"cannot parse --accept {spec!r}; examples: finite, max-abs<=1, cosine>=0.999, wer<=+0.5")
        metric, op = m["metric"], m["op"]
        if metric == INSIDE:
            if op or m["output"]:
                raise BadInput(f"--accept {spec!r}: write it as {INSIDE} (it applies to every tensor of the graph)")
        elif metric in _OUTPUT_METRICS:
            if (_OUTPUT_METRICS[metric] is None) != (op is None) or (op and op != _OUTPUT_METRICS[metric]):
                want = metric if _OUTPUT_METRICS[metric] is None else f"{metric}{_OUTPUT_METRICS[metric]}X"
                raise BadInput(f"--accept {spec!r}: write it as {want}")
        elif metric in TASK_METRICS:
            if op != TASK_METRICS[metric]:
                raise BadInput(f"--accept {spec!r}: write it as " + (f"{metric}>=X" if TASK_METRICS[metric] == ">=" else
                                                                     f"{metric}<=+X (points over FP32) or {metric}<=X"))
            if m["output"]:
                raise BadInput(f"--accept {spec!r}: task metrics apply to the whole task, not to one output")
        else:
            raise BadInput(f"unknown acceptance metric {metric!r} in {spec!r}")
        try:
            value = float(m["value"]) if m["value"] else 0.0
        except ValueError:
            raise BadInput(f"--accept {spec!r}: {m['value']!r} is not a number") from None
        lo, hi = _RANGES.get(metric, (0.0, 0.0))
        if op and not lo <= value <= hi:
            raise BadInput(f"--accept {spec!r}: the threshold of {metric} must lie between {lo:g} and {hi:g}")
        if m["plus"] and metric not in ("wer", "cer"):
            raise BadInput(f"--accept {spec!r}: '+X' (over FP32) is for task metrics (wer<=+X)")
        out.append(Criterion(metric, op, value, m["output"], bool(m["plus"])))
    return out


def _output_measure(metric: str, ref: np.ndarray, cand: np.ndarray) -> float:
    if np.asarray(ref).dtype.kind != "f":
        if metric != "argmax-agreement":
            raise BadInput(f"--accept {metric} needs a float output; this one holds {np.asarray(ref).dtype} (use argmax-agreement)")
        same = np.asarray(ref).shape == np.asarray(cand).shape
        return float(np.mean(np.asarray(ref) == np.asarray(cand))) if same else 0.0
    r = np.asarray(ref, np.float64)
    c = np.asarray(cand, np.float64)
    if r.shape != c.shape:
        return 0.0 if metric == "argmax-agreement" else (-math.inf if metric == "cosine" else math.inf)
    if metric == "finite":
        return float(np.sum(~np.isfinite(c) & np.isfinite(r)))
    if metric == "argmax-agreement":
        if r.ndim == 0 or r.shape[-1] < 2:
            return 1.0
        return float(np.mean(np.argmax(np.nan_to_num(r, nan=-np.inf), -1) == np.argmax(np.nan_to_num(c, nan=-np.inf), -1)))
    fin = np.isfinite(r)
    same = (r == c) | (np.isnan(r) & np.isnan(c))  # where FP32 is non-finite, only the same value agrees
    if not np.all(np.isfinite(c[fin])) or not np.all(same[~fin]):
        return math.inf if metric != "cosine" else -math.inf
    r, c = r[fin], c[fin]
    if metric == "max-abs":
        return float(np.max(np.abs(c - r), initial=0.0))
    if metric == "rel-l2":
        nr, nd = np.linalg.norm(r), np.linalg.norm(c - r)
        return float(nd / nr) if nr > 0 else (0.0 if nd == 0 else math.inf)
    if metric == "cosine":
        nr, nc = np.linalg.norm(r), np.linalg.norm(c)
        return float(np.dot(r, c) / (nr * nc)) if nr > 0 and nc > 0 else float(nr == nc)
    raise ValueError(metric)


@dataclass
class Verdict(Record):
    passed: bool
    measures: dict[str, float] = field(default_factory=dict)  # criterion text -> worst value seen
    failed: list[str] = field(default_factory=list)


def _worse(c: Criterion, a: float | None, b: float) -> float:
    if a is None:
        return b
    if c.metric == "finite":
        return a + b
    return max(a, b) if c.op == "<=" else min(a, b)


def judge_outputs(criteria: list[Criterion], pairs: list[tuple[dict, dict]], outputs: list[str]) -> Verdict:
    """Apply the output criteria to (reference, candidate) output dicts of every sample."""
    measures: dict[str, float] = {}
    for c in criteria:
        if not c.is_output:
            continue
        # non-float outputs (ids, masks) answer only argmax-agreement: the share of equal elements
        names = [c.output] if c.output else [o for o in outputs if np.asarray(pairs[0][0][o]).dtype.kind == "f"
                                              or c.metric == "argmax-agreement"]
        for o in names:
            if o not in pairs[0][0]:
                raise BadInput(f"--accept {c.text()}: the model has no output {o!r} (outputs: {', '.join(outputs)})")
            for ref, cand in pairs:
                measures[c.text()] = _worse(c, measures.get(c.text()), _output_measure(c.metric, ref[o], cand[o]))
    failed = [c.text() for c in criteria if c.is_output and c.text() in measures and not c.holds(measures[c.text()])]
    return Verdict(not failed, measures, failed)


def check_outputs(criteria: list[Criterion], outputs: list[str], float_outputs: list[str] | None = None) -> None:
    """Refuse, before any work, a criterion naming an output the model does not have, a float metric
    on an integer output, or criteria that would judge nothing at all (a model with only integer outputs)."""
    floats = set(outputs if float_outputs is None else float_outputs)
    for c in criteria:
        if c.output and c.output not in outputs:
            raise BadInput(f"--accept {c.text()}: the model has no output {c.output!r} (outputs: {', '.join(outputs)})")
        if c.output and c.metric in _FLOAT_ONLY and c.output not in floats:
            raise BadInput(f"--accept {c.text()}: output {c.output!r} is not a float tensor (judge ids and masks with argmax-agreement>=X)")
    judged = [c for c in criteria if c.is_output and (c.metric == "argmax-agreement" or (c.output in floats if c.output else floats))]
    if criteria and not judged and any(c.is_output for c in criteria):
        raise BadInput(f"--accept {describe(criteria)} judges no output: the model's outputs ({', '.join(outputs)}) hold no floats; "
                       "judge them with argmax-agreement>=X (the share of equal elements)")


_MEASURE_NAMES = {"finite": "non-finite values", "max-abs": "max abs error", "rel-l2": "relative L2 error",
                  "cosine": "cosine similarity", "argmax-agreement": "argmax agreement",
                  "token-agreement": "token agreement with FP32's decode"}


def measure_label(text: str) -> str:
    """What a criterion's measure counts, in words ("finite" measures non-finite values, "wer<=+0.5" the change in points)."""
    m = _RX.match(text.strip())
    if not m:
        return text
    metric = m["metric"]
    if metric in ("wer", "cer"):
        name = f"{metric.upper()} change vs FP32 (points)" if m["plus"] else f"{metric.upper()} (%)"
    else:
        name = _MEASURE_NAMES.get(metric, metric)
    return f"{m['output']}: {name}" if m["output"] else name


def describe(criteria: list[Criterion]) -> str:
    return ", ".join(c.text() for c in criteria)
