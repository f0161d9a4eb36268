"""What a verdict rests on besides agreement, said wherever the verdict is said.

- The FP32 reference itself computes NaN at an output: nothing can be judged against it, and the low
  precision is not to blame (compare: verdict ``reference-nonfinite``; bisect: refused before the search).
  Inf/NaN FP32 computes and the candidate reproduces (a -inf mask) are agreement, and named.
- New Inf/NaN born inside the graph that the outputs do not show (x/inf = 0 hides an overflow): a failure
  unless the user opts out (``--allow-internal-nonfinite``), and flagged either way.
- Benign saturation (FP32 values beyond the format's range that become infinities of the same sign, changing
  nothing downstream: a float32-min attention mask): noted, never a failure (comparison.benign_saturation).
- Seeded random data: a model that breaks on real inputs often passes on random ones.
"""
from __future__ import annotations

from .acceptance import INSIDE
from .comparison import Comparison, hidden_nonfinite
from ..core.errors import BadInput
from ..core.status import CompareVerdict

ALLOW_INTERNAL = "--allow-internal-nonfinite"
RANDOM_DATA = ("{what} on seeded random data (seed {seed}), not on real inputs: models that break on real data "
               "often pass on random data; give --inputs with real samples")


def reference_nan(c: Comparison) -> str | None:
    """One line when FP32 itself computes NaN at a graph output (with where it is born), else None."""
    if c.reference is None or not c.reference.nan_outputs:
        return None
    return c.reference.sentence() + f"; {sum(c.reference.nan_outputs.values())} of them NaN"


def compare_verdict(c: Comparison, allow_internal: bool) -> tuple[CompareVerdict, list[str]]:
    """The run's verdict and its reasons: the comparison's, with FP32 NaN and hidden Inf/NaN accounted for."""
    nan = reference_nan(c)
    if nan:
        return CompareVerdict.REFERENCE_NONFINITE, [nan + "; the low precision is not to blame: check the inputs (or the model) in FP32"]
    reasons = list(c.reasons)
    hidden = hidden_nonfinite(c)
    if hidden and not allow_internal:  # a failure in its own words: never "diverges ... passes" in one sentence
        reasons.append(hidden + f" (a failure by itself: {INSIDE}; {ALLOW_INTERNAL} accepts it)")
    return (CompareVerdict.DIVERGES if reasons else CompareVerdict.OK), reasons


def reference_note(c: Comparison) -> str | None:
    """Inf/NaN FP32 computes that do not make the verdict impossible (masks, NaN masked away before the outputs)."""
    if c.reference is None or c.reference.nan_outputs:
        return None
    return c.reference.sentence() + "; the candidate agrees where it holds the same values"


def saturation_note(c: Comparison) -> str | None:
    """One line naming benign saturation, where there is some."""
    return c.saturation.sentence(c.precision) if c.saturation is not None else None


def warnings_of(c: Comparison, allow_internal: bool) -> list[str]:
    """What a reader of a verdict on ``c`` must know even when it passes."""
    out = [w for w in (reference_note(c), saturation_note(c)) if w]
    hidden = hidden_nonfinite(c)
    if hidden and allow_internal:
        out.append(hidden + f" (accepted: {ALLOW_INTERNAL})")
    return out


def refuse_nan_reference(c: Comparison) -> None:
    """Bisect cannot search for pins against an FP32 reference that is NaN at the outputs: one line, exit 2."""
    nan = reference_nan(c)
    if nan:
        raise BadInput(nan + "; no precision plan can be judged against it: check the inputs (or the model) in FP32")


VERDICT = "the verdict is"  # what a command's results are, in the random-data warning (scan has risks, not a verdict)


def input_warnings(source: str, seed: int | None, infinite: list[str], what: str = VERDICT) -> list[str]:
    out = [RANDOM_DATA.format(seed=seed, what=what)] if source == "random" else []
    return out + [f"{w}: the FP32 reference computes with them as given" for w in infinite]
