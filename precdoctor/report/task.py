"""The report's task section (``--task``): WER/CER per configuration, the worst utterances with their words
diffed against the reference, and for a decoder, where each clip's decode departs from FP32's."""
from __future__ import annotations

import difflib
import html

from .numbers import num, pct


def _diff_html(ref: str, hyp: str) -> str:
    """Word diff of hyp against ref after WER's normalization (what is scored); every word escaped."""
    from ..tasks.wer import normalize

    a, b = normalize(ref).split(), normalize(hyp).split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(html.escape(" ".join(a[i1:i2])))
        if op in ("delete", "replace"):
            parts.append(f"<del>{html.escape(' '.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            parts.append(f"<ins>{html.escape(' '.join(b[j1:j2]))}</ins>")
    return " ".join(parts)


def worst(task) -> list[dict]:
    return [{"id": u.id, "reference": u.reference, "fp32": _diff_html(u.reference, u.fp32),
             "cands": [(k, _diff_html(u.reference, v)) for k, v in u.hypotheses.items()]} for u in task.worst]


def decodes(task) -> list[dict]:
    """Per configuration, per clip: the step where the decode first departs from FP32's and the tokens on both sides."""
    out = []
    for d in task.decodes:
        errs = [e for c in d.clips for e in c.logit_rel_l2]
        clips = [{"id": c.id, "steps": c.steps, "identical": c.identical, "step": "-" if c.identical else f"{c.departure + 1}",
                  "fp32": c.fp32_token, "cand": c.candidate_token, "before": c.before, "fp32_after": c.fp32_after,
                  "cand_after": c.candidate_after,
                  "logit": num(max(c.logit_rel_l2), ".3g") if c.logit_rel_l2 else "-"} for c in d.clips]
        out.append({"config": d.config, "agreement": f"{d.token_agreement:.3f}", "identical": f"{d.identical} of {len(d.clips)}",
                    "logit": (f"median {num(sorted(errs)[len(errs) // 2], '.3g')}, max {num(max(errs), '.3g')} over "
                              f"{len(errs)} steps") if errs else "not measured",
                    "how": d.logits, "clips": clips})
    return out


def decode_steps(task) -> list:
    """The DecodeReports with per-step logit errors: the figure's lines."""
    return [d for d in task.decodes if any(c.logit_rel_l2 for c in d.clips)]


def task_rows(task) -> list[dict]:
    fp32 = task.row("fp32")
    rows = []
    for r in task.rows:
        delta = "" if fp32 is None or r.config == "fp32" else f"{100 * (r.wer - fp32.wer):+.2f} points"
        rows.append({"config": r.config, "wer": pct(r.wer), "cer": pct(r.cer), "delta": delta, "s": r.substitutions,
                     "i": r.insertions, "d": r.deletions, "words": r.words, "seconds": num(r.seconds, ".1f", "s")})
    return rows
