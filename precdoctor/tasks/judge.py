"""Running a task over a dataset under a precision plan: transcripts, WER rows, task acceptance.

The search judges plans on graph outputs of a few clips (cheap); a TaskJudge
then transcribes the whole dataset to confirm a plan with the task metric.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..core import progress
from ..core.limits import DECODE_CHUNK, DECODE_MEMORY_SHARE, FEATURES_MEMORY_SHARE
from ..analysis.acceptance import Criterion, Verdict
from ..core.errors import BadInput
from ..planning.plan import Plan, config_name, other_precision
from ..core.records import Record
from . import audio, wer
from .baseline import Baseline, check, refusal
from .decodes import DecodeReport, StepErrors, decode_report
from .decoding import agreement
from .features import Features, feed_bytes
from .placement import Placement
from .registry import TaskParams


@dataclass
class WerRow(wer.Score):
    config: str  # fp32, fp16, bf16, fp16+pins, ...
    seconds: float  # transcribing the whole dataset


@dataclass
class Utterance(Record):
    id: str
    reference: str
    fp32: str
    hypotheses: dict[str, str]  # config -> transcript
    wer_naive: float


@dataclass
class Confirmation(Record):
    pins: list[str]
    passed: bool
    measures: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    search_evaluations: int | None = None


@dataclass
class TaskReport(Record):
    task: dict[str, Any]  # the task's own describe()
    clips: int
    proxy_clips: int
    label_free: bool
    criteria: list[str]
    confirmations: list[Confirmation] = field(default_factory=list)
    rows: list[WerRow] = field(default_factory=list)
    worst: list[Utterance] = field(default_factory=list)
    normalization: str | None = None
    decodes: list[DecodeReport] = field(default_factory=list)  # per configuration, against FP32's decode (decode-loop tasks)
    baseline: Baseline | None = None  # the FP32 baseline gate's findings (tasks/baseline.py), checked before any comparison

    def row(self, config: str) -> WerRow | None:
        return next((r for r in self.rows if r.config == config), None)


@dataclass
class Transcripts:
    config: str
    hyps: list[str]
    seconds: float
    tokens: list[list[int]] | None = None  # per clip, one token per decode step (decode-loop tasks)


@dataclass
class TaskJudge:
    """Holds the dataset, the FP32 transcripts, and scores plans with the task metric."""

    task: Any
    graph: Any  # the model under test's GraphView
    clips: list
    audio: list
    params: TaskParams
    input_name: str
    cache: dict = field(default_factory=dict)  # plan key -> Transcripts
    store: Any = None  # cache.TranscriptStore: transcripts kept beside the journal across runs
    baseline: Baseline | None = None  # set by check_baseline
    placement: Placement = Placement()  # the device of the FP32 runners, the memory the passes may hold

    @property
    def label_free(self) -> bool:
        return self.params.label_free or all(c.text is None for c in self.clips)

    @property
    def decodes(self) -> bool:
        """The task decodes tokens in a loop (Whisper): token agreement and decode reports apply."""
        return callable(getattr(self.task, "transcribe_tokens", None))

    def __post_init__(self):
        self.features = Features(self.make_feed, int(self.placement.budget_bytes * FEATURES_MEMORY_SHARE))

    def feed(self, k: int) -> dict:
        """The model input for clip k, computed once per run while the kept inputs fit (features.py)."""
        return self.features(k)

    def make_feed(self, k: int) -> dict:
        """The task's model input for clip k, checked against the model as any input sample is."""
        from ..planning.inputs import validate

        where = f"the {self.task.name} task's input for clip {self.clips[k].id!r}"
        return validate(self.graph, [self.task.feeds(self.audio[k], self.input_name)], where)[0]

    def samples(self) -> list[dict]:
        """Model inputs of the first clips: what the output-level search judges plans on (dicts of their own: the
        kept features stay as computed whatever a caller does with its samples)."""
        return [dict(self.feed(k)) for k in range(min(self.params.proxy_clips, len(self.audio)))]

    def transcribe(self, runner, config: str) -> Transcripts:
        """Transcripts of every clip with ``runner`` as the model under test; a decode-loop task gets the
        configuration's precision too (Whisper's ``--under-test both`` runs its decoder naive in it). A task that
        decodes in batches (``transcribe_batch``) gets the model's outputs of a chunk of clips at a time, the
        clips taken shortest first so that a chunk's decodes end close together."""
        t = time.perf_counter()
        precision = None if config == "fp32" else config.split("+")[0]
        n, batch = len(self.audio), getattr(self.task, "transcribe_batch", None)
        done: list = [None] * n
        with progress.stage(f"transcribing ({config})", n, "clip") as s:
            if not callable(batch):
                for k in range(n):
                    outputs = runner(self.feed(k))
                    done[k] = (self.task.transcribe(outputs), None) if not self.decodes else self.task.transcribe_tokens(outputs, precision)
                    s.advance()
            else:
                order = self.shortest_first()
                chunk: list[tuple[int, dict]] = []
                size = 0
                for i, k in enumerate(order):
                    feed = self.feed(k)
                    chunk.append((k, runner(feed)))
                    size = size or self.chunk_size(feed, chunk[0][1])
                    if len(chunk) == size or i == n - 1:
                        for (j, _), got in zip(chunk, batch([o for _, o in chunk], precision)):
                            done[j] = got
                        s.advance(len(chunk))
                        chunk = []
        tokens = [s for _, s in done] if self.decodes else None
        return Transcripts(config, [h for h, _ in done], time.perf_counter() - t, tokens)

    def shortest_first(self) -> list[int]:
        """The clips' indices, shortest first: a chunk of them decoded in one batch ends close together."""
        return sorted(range(len(self.audio)), key=lambda k: (len(self.audio[k]), k))

    def chunk_size(self, feed: dict, outputs: dict) -> int:
        """Clips decoded in one batch: DECODE_CHUNK, fewer where the chunk's model outputs, decode memory
        (the task's ``decode_bytes``) and inputs would pass DECODE_MEMORY_SHARE of the memory budget."""
        per_clip = feed_bytes(outputs) + feed_bytes(feed) + self.task.decode_bytes(outputs)
        return max(1, min(DECODE_CHUNK, int(self.placement.budget_bytes * DECODE_MEMORY_SHARE) // max(per_clip, 1)))

    def _fp32_runner(self):
        if "_fp32_runner" not in self.cache:
            self.cache["_fp32_runner"] = self.placement.fp32_runner(self.graph)
        return self.cache["_fp32_runner"]

    def references(self, fp32: Transcripts) -> list[str]:
        return [c.text if c.text is not None and not self.params.label_free else h for c, h in zip(self.clips, fp32.hyps)]

    def fp32(self) -> Transcripts:
        """FP32 transcripts, computed once (the reference session is built only then)."""
        return self._cached("fp32", "fp32", self._fp32_runner)

    def run_plan(self, backend, plan: Plan, config: str) -> Transcripts:
        return self._cached(plan.key(), config, lambda: backend.runner(self.graph, plan))

    def _cached(self, key: str, config: str, runner) -> Transcripts:
        if key not in self.cache:
            stored = self.store.get(key) if self.store else None
            if stored is not None and len(stored.hyps) == len(self.audio) and (stored.tokens is not None) == self.decodes:
                self.cache[key] = Transcripts(config, stored.hyps, stored.seconds, stored.tokens)  # a damaged entry is transcribed again
            else:
                self.cache[key] = tr = self.transcribe(runner(), config)
                if self.store:
                    from .cache import CachedTranscripts

                    self.store.append(CachedTranscripts(key, config, tr.hyps, tr.seconds, tr.tokens))
        return self.cache[key]

    def check_baseline(self, force: bool = False) -> Baseline:
        """The FP32 baseline gate (tasks/baseline.py), run before any comparison or search: a broken FP32 setup
        stops the run with one line (BadInput, exit 2) unless ``force``."""
        if self.baseline is None:
            base = self.fp32()
            labelled = not self.label_free
            refs = [c.text if labelled else None for c in self.clips]
            rate = wer.score(self.references(base), base.hyps, self.params.numbers).wer if labelled else None
            b = check([c.id for c in self.clips], base.hyps, refs, rate, base.tokens, getattr(self.task, "eot", None))
            if b.broken and not force:
                hint = getattr(self.task, "setup_hint", None)
                raise BadInput(refusal(b, hint() if callable(hint) else ""))
            b.forced = b.broken
            self.baseline = b
        return self.baseline

    def keep(self, store) -> None:
        """Transcripts are kept in ``store`` from now on, those already made (the baseline's FP32) included."""
        self.store = store
        from .cache import CachedTranscripts

        for key, tr in self.cache.items():
            if isinstance(tr, Transcripts) and store.get(key) is None:
                store.append(CachedTranscripts(key, tr.config, tr.hyps, tr.seconds, tr.tokens))

    def files(self) -> list[str]:
        """Files the task reads besides the model (decoder, tokenizer, vocabulary), for fingerprints."""
        return [str(f) for f in getattr(self.task, "files", lambda: [])()]

    def row(self, tr: Transcripts, refs: list[str]) -> WerRow:
        s = wer.score(refs, tr.hyps, self.params.numbers)
        return WerRow(**vars(s), config=tr.config, seconds=round(tr.seconds, 2))

    def judge(self, backend, plan: Plan, criteria: list[Criterion]) -> Verdict:
        base = self.fp32()
        refs = self.references(base)
        cand = self.run_plan(backend, plan, config_name(plan.precision, plan.pins))
        b, c = wer.score(refs, base.hyps, self.params.numbers), wer.score(refs, cand.hyps, self.params.numbers)
        measures, failed = {}, []
        for crit in criteria:
            if crit.metric == TOKEN_AGREEMENT:
                value = agreement(base.tokens, cand.tokens)
            else:
                value = (getattr(c, crit.metric) - (getattr(b, crit.metric) if crit.relative else 0.0)) * 100  # points
            measures[crit.text()] = value
            if not crit.holds(value):
                failed.append(crit.text())
        return Verdict(not failed, measures, failed)

    def report(self, criteria) -> TaskReport:
        return TaskReport(self.task.describe(), len(self.clips), min(self.params.proxy_clips, len(self.clips)), self.label_free,
                          [c.text() for c in criteria], baseline=self.baseline)

    def table(self, backend, precision: str, pins=frozenset(), other: bool = True) -> tuple[list[WerRow], list[Utterance], str]:
        """WER rows (FP32, naive low precision, the other format, the pinned plan), worst utterances, normalization."""
        base = self.fp32()
        refs = self.references(base)
        runs = [base] + [self.run_plan(backend, plan, config) for config, plan in configs(precision, pins, other)]
        naive, numbers = runs[1], self.params.numbers
        worst = sorted(range(len(self.clips)), key=lambda i: -wer.utterance_wer(refs[i], naive.hyps[i], numbers))[:5]
        utts = [Utterance(self.clips[i].id, refs[i], base.hyps[i], {tr.config: tr.hyps[i] for tr in runs[1:]},
                          wer.utterance_wer(refs[i], naive.hyps[i], numbers)) for i in worst]
        return [self.row(tr, refs) for tr in runs], utts, wer.normalization(numbers)


    def decode_reports(self, backend, plans: list[tuple[str, Plan]], pairs: dict | None = None) -> list[DecodeReport]:
        """Each (configuration, plan) decoded against FP32's decode, per clip (``configs`` gives the table's);
        ``pairs``: plan key -> a comparison's (reference, candidate) outputs on ``samples()``, reused for the
        per-step logit error."""
        if not self.decodes:
            return []
        base, out = self.fp32(), []
        for config, plan in plans:
            tr = self.run_plan(backend, plan, config)
            errors, how = self.step_errors(backend, plan, (pairs or {}).get(plan.key()))
            out.append(decode_report(config, [c.id for c in self.clips], base.tokens, tr.tokens, self.task.pieces, errors, how))
        return out

    def step_errors(self, backend, plan: Plan, pairs=None) -> tuple[StepErrors, str]:
        """The per-step logit error of a plan (teacher-forced); none here: the decoder is not the model under test."""
        return {}, ""


TOKEN_AGREEMENT = "token-agreement"


def configs(precision: str, pins=frozenset(), other: bool = True) -> list[tuple[str, Plan]]:
    """The configurations a task table shows besides FP32: naive, the other format's naive, the pinned plan."""
    out = [(precision, Plan(precision))]
    if other:
        o = other_precision(precision)
        out.append((o, Plan(o)))
    if pins:
        out.append((config_name(precision, pins), Plan(precision, frozenset(pins))))
    return out


def dataset(params: TaskParams, rate: int) -> tuple[list, list]:
    """The clips of the dataset and their audio at the task's rate."""
    clips = audio.dataset(params.data, params.limit, params.label_free)
    loaded = audio.load_clips(clips, rate, params.on_bad_audio)
    return [c for c, _ in loaded], [a for _, a in loaded]
