"""Running a task over a dataset under a precision plan: transcripts, WER rows, task acceptance.

The search judges plans on graph outputs of a few clips (cheap); a TaskJudge
then transcribes the whole dataset to confirm a plan with the task metric.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..accept import Criterion, Verdict
from ..errors import BadInput
from ..graph import load_model
from ..inputs import model_input_names
from ..plan import Plan
from . import audio, wer


def make_task(model_path: str, opts: dict):
    name = opts.get("task_name")
    model_dir = Path(model_path).parent
    if name == "whisper":
        from .whisper import WhisperTask

        return WhisperTask(opts.get("decoder") or model_dir / "decoder.onnx", opts.get("tokenizer") or model_dir / "tokenizer.json",
                           test=opts.get("test_part", "encoder"))
    if name == "ctc":
        from .ctc import CtcTask

        vocab = opts.get("vocab") or next((p for p in (model_dir / "vocab.json", model_dir / "vocab.txt") if p.is_file()), None)
        if vocab is None:
            raise BadInput("ctc task needs --vocab (vocab.json or one token per line)")
        return CtcTask(vocab, opts.get("blank", 0), opts.get("delimiter", "|"), opts.get("normalize_audio", True))
    if name and ":" in name:  # plug-in: package.module:factory(model_path, options) -> task
        mod, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as exc:
            raise BadInput(f"cannot load task plug-in {name!r}: {exc}") from None
        return factory(model_path, opts)
    raise BadInput(f"unknown task {name!r}; expected ctc, whisper or package.module:factory")


@dataclass
class Transcripts:
    config: str
    hyps: list[str]
    seconds: float


@dataclass
class TaskJudge:
    """Holds the dataset, the FP32 transcripts, and scores plans with the task metric."""

    task: object
    model_path: str
    clips: list
    audio: list
    numbers: bool = False
    proxy_clips: int = 4
    label_free: bool = False
    cache: dict = field(default_factory=dict)  # plan key -> Transcripts
    input_name: str = ""

    def samples(self, graph) -> list[dict]:
        """Model inputs of the first clips: what the output-level search judges plans on."""
        return [self.task.feeds(a, self.input_name) for a in self.audio[: self.proxy_clips]]

    def transcribe(self, runner, config: str) -> Transcripts:
        """Transcripts of every clip with ``runner`` as the model under test; tasks that can put a
        second model under test (Whisper's decoder) get the configuration's precision too."""
        t = time.perf_counter()
        precision = None if config == "fp32" else config.split("+")[0]
        if getattr(self.task, "test", "encoder") == "decoder":
            runner = self._fp32_runner()
        if hasattr(self.task, "decoder_for"):
            hyps = [self.task.transcribe(runner(self.task.feeds(a, self.input_name)), precision) for a in self.audio]
        else:
            hyps = [self.task.transcribe(runner(self.task.feeds(a, self.input_name))) for a in self.audio]
        return Transcripts(config, hyps, time.perf_counter() - t)

    def _fp32_runner(self):
        if "_fp32_runner" not in self.cache:
            from ..backends.reference import ReferenceBackend
            from ..graph import view

            self.cache["_fp32_runner"] = ReferenceBackend(view(load_model(self.model_path)))
        return self.cache["_fp32_runner"]

    def references(self, fp32: Transcripts) -> list[str]:
        return [c.text if c.text is not None and not self.label_free else h for c, h in zip(self.clips, fp32.hyps)]

    def fp32(self, graph) -> Transcripts:
        """FP32 transcripts, computed once (the reference session is built only then)."""
        if "fp32" not in self.cache:
            from ..backends.reference import ReferenceBackend

            self.cache["fp32"] = self.transcribe(ReferenceBackend(graph), "fp32")
        return self.cache["fp32"]

    def run_plan(self, backend, graph, plan: Plan, config: str) -> Transcripts:
        key = plan.key()
        if key not in self.cache:
            self.cache[key] = self.transcribe(backend.runner(graph, plan), config)
        return self.cache[key]

    def row(self, tr: Transcripts, refs: list[str]) -> dict:
        s = wer.score(refs, tr.hyps, self.numbers)
        return {"config": tr.config, **s.to_json(), "seconds": round(tr.seconds, 2)}

    def judge(self, backend, graph, plan: Plan, criteria: list[Criterion]) -> Verdict:
        base = self.fp32(graph)
        refs = self.references(base)
        cand = self.run_plan(backend, graph, plan, plan.precision + ("+pins" if plan.pins else ""))
        b, c = wer.score(refs, base.hyps, self.numbers), wer.score(refs, cand.hyps, self.numbers)
        measures, failed = {}, []
        for crit in criteria:
            value = (getattr(c, crit.metric) - (getattr(b, crit.metric) if crit.relative else 0.0)) * 100  # points
            measures[crit.text()] = value
            if not crit.holds(value):
                failed.append(crit.text())
        return Verdict(not failed, measures, failed)

    def report_header(self, criteria) -> dict:
        return {"task": self.task.describe(), "clips": len(self.clips), "proxy_clips": min(self.proxy_clips, len(self.clips)),
                "label_free": self.label_free or all(c.text is None for c in self.clips),
                "criteria": [c.text() for c in criteria], "confirmations": []}

    def table(self, backend, graph, precision: str, pins=frozenset(), other: bool = True) -> dict:
        """WER rows: FP32, naive low precision, the other format, and the pinned plan; worst utterances."""
        base = self.fp32(graph)
        refs = self.references(base)
        runs = [base, self.run_plan(backend, graph, Plan(precision), precision)]
        if other:
            o = "bf16" if precision == "fp16" else "fp16"
            runs.append(self.run_plan(backend, graph, Plan(o), o))
        if pins:
            runs.append(self.run_plan(backend, graph, Plan(precision, frozenset(pins)), precision + "+pins"))
        rows = [self.row(tr, refs) for tr in runs]
        naive = runs[1]
        worst = sorted(range(len(self.clips)), key=lambda i: -wer.utterance_wer(refs[i], naive.hyps[i], self.numbers))[:5]
        utts = [{"id": self.clips[i].id, "reference": refs[i], "fp32": base.hyps[i],
                 **{tr.config: tr.hyps[i] for tr in runs[1:]},
                 "wer_naive": wer.utterance_wer(refs[i], naive.hyps[i], self.numbers)} for i in worst]
        return {"rows": rows, "worst": utts, "normalization": "lower-case, punctuation removed" + (", digits spelled out" if self.numbers else "")}


def make_judge(model_path: str, opts: dict) -> TaskJudge:
    if not opts.get("data"):
        raise BadInput("--task needs --data (a NeMo manifest or a folder of audio with .txt transcripts)")
    task = make_task(model_path, opts)
    clips = audio.dataset(opts["data"], opts.get("limit"), opts.get("label_free", False))
    loaded = audio.load_clips(clips, task.rate, opts.get("on_bad_audio", "fail"))
    import onnx

    try:
        names = model_input_names(onnx.load(str(model_path), load_external_data=False))
    except Exception:
        names = model_input_names(load_model(model_path))  # raises the readable error
    if len(names) != 1:
        raise BadInput(f"the {task.name} task expects a model with one input; this one has {names}")
    return TaskJudge(task, model_path, [c for c, _ in loaded], [a for _, a in loaded], opts.get("numbers", False),
                     opts.get("proxy_clips", 4), opts.get("label_free", False), input_name=names[0])
