"""Running a task over a dataset under a precision plan: transcripts, WER rows, task acceptance.

The search judges plans on graph outputs of a few clips (cheap); a TaskJudge
then transcribes the whole dataset to confirm a plan with the task metric.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..acceptance import Criterion, Verdict
from ..errors import BadInput
from ..plan import Plan
from ..records import Record
from . import audio, wer
from .registry import TaskParams, make_task


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

    def row(self, config: str) -> WerRow | None:
        return next((r for r in self.rows if r.config == config), None)


@dataclass
class Transcripts:
    config: str
    hyps: list[str]
    seconds: float


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

    @property
    def label_free(self) -> bool:
        return self.params.label_free or all(c.text is None for c in self.clips)

    def feed(self, k: int) -> dict:
        """The task's model input for clip k, checked against the model as any input sample is."""
        from ..inputs import validate

        where = f"the {self.task.name} task's input for clip {self.clips[k].id!r}"
        return validate(self.graph, [self.task.feeds(self.audio[k], self.input_name)], where)[0]

    def samples(self) -> list[dict]:
        """Model inputs of the first clips: what the output-level search judges plans on."""
        return [self.feed(k) for k in range(min(self.params.proxy_clips, len(self.audio)))]

    def transcribe(self, runner, config: str) -> Transcripts:
        """Transcripts of every clip with ``runner`` as the model under test; tasks that can put a
        second model under test (Whisper's decoder) get the configuration's precision too."""
        t = time.perf_counter()
        precision = None if config == "fp32" else config.split("+")[0]
        if getattr(self.task, "test", "encoder") == "decoder":
            runner = self._fp32_runner()
        if hasattr(self.task, "decoder_for"):
            hyps = [self.task.transcribe(runner(self.feed(k)), precision) for k in range(len(self.audio))]
        else:
            hyps = [self.task.transcribe(runner(self.feed(k))) for k in range(len(self.audio))]
        return Transcripts(config, hyps, time.perf_counter() - t)

    def _fp32_runner(self):
        if "_fp32_runner" not in self.cache:
            from ..backends.reference import ReferenceRunner

            self.cache["_fp32_runner"] = ReferenceRunner(self.graph)
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
            if stored is not None and len(stored.hyps) == len(self.audio):  # a damaged entry is transcribed again
                self.cache[key] = Transcripts(config, stored.hyps, stored.seconds)
            else:
                self.cache[key] = tr = self.transcribe(runner(), config)
                if self.store:
                    from .cache import CachedTranscripts

                    self.store.put(CachedTranscripts(key, config, tr.hyps, tr.seconds))
        return self.cache[key]

    def files(self) -> list[str]:
        """Files the task reads besides the model (decoder, tokenizer, vocabulary), for fingerprints."""
        return [str(f) for f in getattr(self.task, "files", lambda: [])()]

    def row(self, tr: Transcripts, refs: list[str]) -> WerRow:
        s = wer.score(refs, tr.hyps, self.params.numbers)
        return WerRow(**vars(s), config=tr.config, seconds=round(tr.seconds, 2))

    def judge(self, backend, plan: Plan, criteria: list[Criterion]) -> Verdict:
        base = self.fp32()
        refs = self.references(base)
        cand = self.run_plan(backend, plan, plan.precision + ("+pins" if plan.pins else ""))
        b, c = wer.score(refs, base.hyps, self.params.numbers), wer.score(refs, cand.hyps, self.params.numbers)
        measures, failed = {}, []
        for crit in criteria:
            value = (getattr(c, crit.metric) - (getattr(b, crit.metric) if crit.relative else 0.0)) * 100  # points
            measures[crit.text()] = value
            if not crit.holds(value):
                failed.append(crit.text())
        return Verdict(not failed, measures, failed)

    def report(self, criteria) -> TaskReport:
        return TaskReport(self.task.describe(), len(self.clips), min(self.params.proxy_clips, len(self.clips)), self.label_free,
                          [c.text() for c in criteria])

    def table(self, backend, precision: str, pins=frozenset(), other: bool = True) -> tuple[list[WerRow], list[Utterance], str]:
        """WER rows (FP32, naive low precision, the other format, the pinned plan), worst utterances, normalization."""
        base = self.fp32()
        refs = self.references(base)
        runs = [base, self.run_plan(backend, Plan(precision), precision)]
        if other:
            o = "bf16" if precision == "fp16" else "fp16"
            runs.append(self.run_plan(backend, Plan(o), o))
        if pins:
            runs.append(self.run_plan(backend, Plan(precision, frozenset(pins)), precision + "+pins"))
        naive, numbers = runs[1], self.params.numbers
        worst = sorted(range(len(self.clips)), key=lambda i: -wer.utterance_wer(refs[i], naive.hyps[i], numbers))[:5]
        utts = [Utterance(self.clips[i].id, refs[i], base.hyps[i], {tr.config: tr.hyps[i] for tr in runs[1:]},
                          wer.utterance_wer(refs[i], naive.hyps[i], numbers)) for i in worst]
        return [self.row(tr, refs) for tr in runs], utts, wer.normalization(numbers)


def make_judge(graph, model_path: str, params: TaskParams) -> TaskJudge:
    params.check()
    task = make_task(model_path, params)
    if len(graph.inputs) != 1:
        raise BadInput(f"the {task.name} task expects a model with one input; this one has {graph.inputs}")
    clips = audio.dataset(params.data, params.limit, params.label_free)
    loaded = audio.load_clips(clips, task.rate, params.on_bad_audio)
    return TaskJudge(task, graph, [c for c, _ in loaded], [a for _, a in loaded], params, graph.inputs[0])
