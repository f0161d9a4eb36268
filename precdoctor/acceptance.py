"""Acceptance criteria: when does a precision plan count as fixed?

Syntax (repeatable ``--accept``, all must hold on every sample)::

    finite                      no Inf/NaN where FP32 is finite
    max-abs<=X  rel-l2<=X  cosine>=X  argmax-agreement>=X
    OUTPUT:max-abs<=X           only for graph output OUTPUT
    wer<=+X                     task metric (absolute WER over FP32); needs --task/--data

Output criteria are cheap and judge a plan from its graph outputs; task
criteria (registered by tasks) are expensive and confirm a plan at the end.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import BadInput
from .limits import DEFAULT_ACCEPT
from .records import Record

_RX = re.compile(r"^(?:(?P<output>.+):)?(?P<metric>[a-z0-9-]+)\s*(?:(?P<op><=|>=)\s*(?P<plus>\+)?(?P<value>[-+0-9.eE]+|inf))?$")
_OUTPUT_METRICS = {"finite": None, "max-abs": "<=", "rel-l2": "<=", "cosine": ">=", "argmax-agreement": ">="}
TASK_METRICS = {"wer": "<=", "cer": "<="}


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

    def text(self) -> str:
        s = (f"{self.output}:" if self.output else "") + self.metric
        if self.op:
            s += f"{self.op}{'+' if self.relative else ''}{self.value:g}"
        return s

    def holds(self, measured: float) -> bool:
        if self.metric == "finite":
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
        if metric in _OUTPUT_METRICS:
            if (_OUTPUT_METRICS[metric] is None) != (op is None) or (op and op != _OUTPUT_METRICS[metric]):
                want = metric if _OUTPUT_METRICS[metric] is None else f"{metric}{_OUTPUT_METRICS[metric]}X"
                raise BadInput(f"--accept {spec!r}: write it as {want}")
        elif metric in TASK_METRICS:
            if op != "<=":
                raise BadInput(f"--accept {spec!r}: write it as {metric}<=+X (points over FP32) or {metric}<=X")
            if m["output"]:
                raise BadInput(f"--accept {spec!r}: task metrics apply to the whole task, not to one output")
        else:
            raise BadInput(f"unknown acceptance metric {metric!r} in {spec!r}")
        try:
            value = float(m["value"]) if m["value"] else 0.0
        except ValueError:
            raise BadInput(f"--accept {spec!r}: {m['value']!r} is not a number") from None
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
    if metric == "finite":
        return float(np.sum(~np.isfinite(c) & np.isfinite(r)))
    if metric == "argmax-agreement":
        if r.ndim == 0 or r.shape[-1] < 2:
            return 1.0
        return float(np.mean(np.argmax(r, -1) == np.argmax(np.nan_to_num(c, nan=-np.inf), -1)))
    fin = np.isfinite(r)
    if not np.all(np.isfinite(c[fin])):
        return math.inf if metric != "cosine" else -math.inf
    r, c = r[fin], c[fin]
    if metric == "max-abs":
        return float(np.max(np.abs(c - r), initial=0.0))
    if metric == "rel-l2":
        nr = np.linalg.norm(r)
        return float(np.linalg.norm(c - r) / nr) if nr > 0 else float(np.linalg.norm(c - r) > 0) * math.inf
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
        if c.is_task:
            continue
        # non-float outputs (ids, masks) answer only argmax-agreement: the share of equal elements
        names = [c.output] if c.output else [o for o in outputs if np.asarray(pairs[0][0][o]).dtype.kind == "f"
                                              or c.metric == "argmax-agreement"]
        for o in names:
            if o not in pairs[0][0]:
                raise BadInput(f"--accept {c.text()}: the model has no output {o!r} (outputs: {', '.join(outputs)})")
            for ref, cand in pairs:
                measures[c.text()] = _worse(c, measures.get(c.text()), _output_measure(c.metric, ref[o], cand[o]))
    failed = [c.text() for c in criteria if not c.is_task and not c.holds(measures[c.text()])]
    return Verdict(not failed, measures, failed)


def check_outputs(criteria: list[Criterion], outputs: list[str]) -> None:
    """Refuse, before any work, a criterion naming an output the model does not have."""
    for c in criteria:
        if c.output and c.output not in outputs:
            raise BadInput(f"--accept {c.text()}: the model has no output {c.output!r} (outputs: {', '.join(outputs)})")


_MEASURE_NAMES = {"finite": "non-finite values", "max-abs": "max abs error", "rel-l2": "relative L2 error",
                  "cosine": "cosine similarity", "argmax-agreement": "argmax agreement"}


def measure_label(text: str) -> str:
    """What a criterion's measure counts, in words ("finite" measures non-finite values, "wer<=+0.5" the change in points)."""
    m = _RX.match(text.strip())
    if not m:
        return text
    metric = m["metric"]
    if metric in TASK_METRICS:
        name = f"{metric.upper()} change vs FP32 (points)" if m["plus"] else f"{metric.upper()} (%)"
    else:
        name = _MEASURE_NAMES.get(metric, metric)
    return f"{m['output']}: {name}" if m["output"] else name


def describe(criteria: list[Criterion]) -> str:
    return ", ".join(c.text() for c in criteria)
