"""The decoder as the model under test: a decode loop drives it on real decode-time inputs.

The encoder runs FP32, once per clip (its states are kept while they fit ``STATES_CACHE_BYTES``).
The FP32 decode of the proxy clips is recorded: each step's decoder inputs become the samples that
comparison and the pin search run on (teacher-forced: every plan sees the inputs FP32's decode gave
the decoder), and each step's logits the reference of the per-step logit error. A plan's runner is
the decoder under that plan; transcribing runs the whole greedy loop with it, its own tokens and
cache, so token agreement and WER are measured in the loop.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import BadInput
from ..planning.plan import Plan
from .decodes import StepErrors
from .decoding import last_logits, logit_error
from .judge import TaskJudge, Transcripts, dataset
from .placement import Placement
from .registry import TaskParams, make_task

log = logging.getLogger("precdoctor")

DECODE_SAMPLES = 128  # recorded steps the search judges plans on; past it, steps spread evenly over the proxy clips
STATES_CACHE_BYTES = 1 << 30  # encoder states kept across transcription passes (2.3 MB per Whisper clip: 450 clips)


@dataclass
class Recording:
    samples: list[dict]  # the decoder's inputs, one per recorded step
    steps: list[tuple[int, int]]  # (clip index, step) of each sample
    logits: list[np.ndarray]  # FP32's last-position logits of each sample
    tokens: dict[int, list[int]]  # FP32's tokens of each recorded clip
    total: int  # steps decoded, recorded or not


@dataclass
class DecoderJudge(TaskJudge):
    """A TaskJudge whose ``graph`` is the decoder; ``encoder`` is the encoder's GraphView, always FP32."""

    encoder: Any = None
    encoder_path: str = ""
    _states: dict = field(default_factory=dict)
    _recording: Recording | None = None

    @property
    def decodes(self) -> bool:
        return True

    def make_feed(self, k: int) -> dict:
        """The encoder's input for clip k, checked against the encoder."""
        from ..planning.inputs import validate

        where = f"the {self.task.name} task's encoder input for clip {self.clips[k].id!r}"
        return validate(self.encoder, [self.task.feeds(self.audio[k], self.input_name)], where)[0]

    def states(self, k: int) -> np.ndarray:
        """The encoder's FP32 output for clip k."""
        if k in self._states:
            return self._states[k]
        if "_encoder" not in self.cache:
            self.cache["_encoder"] = self.placement.fp32_runner(self.encoder)
        s = next(iter(self.cache["_encoder"](self.feed(k)).values())).astype(np.float32)
        if sum(a.nbytes for a in self._states.values()) + s.nbytes <= STATES_CACHE_BYTES:
            self._states[k] = s
        return s

    def recording(self) -> Recording:
        """FP32's decode of the proxy clips, every step's decoder inputs and logits recorded (once)."""
        if self._recording is None:
            from ..planning.inputs import validate

            fp32, feeds, steps, logits, tokens = self._fp32_runner(), [], [], [], {}
            for k in range(min(self.params.proxy_clips, len(self.audio))):
                f: list = []
                tokens[k] = self.task.decode(self.states(k), fp32, record=f, logits=logits)
                feeds += f
                steps += [(k, j + len(tokens[k]) - len(f)) for j in range(len(f))]  # a with-past decoder's first step is not its own
            keep = spread(len(feeds), DECODE_SAMPLES)
            samples = validate(self.graph, [feeds[i] for i in keep])
            self._recording = Recording(samples, [steps[i] for i in keep], [logits[i] for i in keep], tokens, len(feeds))
            log.info(f"decoder under test: {len(keep)} decode step(s) recorded as samples, of {len(feeds)} on "
                     f"{len(tokens)} proxy clip(s)")
        return self._recording

    def samples(self) -> list[dict]:
        return self.recording().samples

    def run_plan(self, backend, plan: Plan, config: str) -> Transcripts:
        # a decode's steps feed the decoder a new shape each (the cache one longer): the recorded steps are alike
        return self._cached(plan.key(), config, lambda: backend.runner(self.graph, plan, self.samples()))

    def transcribe(self, runner, config: str) -> Transcripts:
        """Every clip decoded in the loop with ``runner`` as the decoder; the encoder FP32."""
        import time

        t = time.perf_counter()
        n = len(self.audio)
        order = self.shortest_first()
        seqs: list = [None] * n
        size = self.chunk_size(self.feed(order[0]), {"states": self.states(order[0])}) if n else 1
        for i in range(0, n, size):
            ks = order[i:i + size]
            for k, seq in zip(ks, self.task.decode_batch([self.states(k) for k in ks], runner)):
                seqs[k] = seq
        return Transcripts(config, [self.task.text(s) for s in seqs], time.perf_counter() - t, seqs)

    def step_errors(self, backend, plan: Plan, pairs=None) -> tuple[StepErrors, str]:
        """Each recorded step's logits under ``plan`` against FP32's, the plan run on FP32's own step inputs;
        from a comparison's candidate outputs where given, else by running the plan."""
        rec, name = self.recording(), self.task.loop.layout.logits
        if pairs is not None and len(pairs) == len(rec.samples):
            cands = [last_logits(c[name]) for _, c in pairs]
        else:
            run = backend.runner(self.graph, plan, rec.samples)
            cands = [last_logits(run(s)[name]) for s in rec.samples]
        errors: StepErrors = {}
        for (k, step), ref, cand in zip(rec.steps, rec.logits, cands):
            errors.setdefault(k, []).append((step, *logit_error(ref, cand)))
        how = (f"teacher-forced: the decoder under the plan on FP32's own inputs of {len(rec.samples)} recorded step(s)"
               + (f" (of {rec.total}, evenly spread)" if rec.total > len(rec.samples) else ""))
        return errors, how

    def files(self) -> list[str]:
        return super().files() + [self.encoder_path]


def spread(n: int, most: int) -> list[int]:
    """Up to ``most`` indexes of ``n``, evenly spread, first and last included."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def make_decoder_judge(graph, encoder_path: str, params: TaskParams, placement: Placement | None = None) -> DecoderJudge:
    """``graph``: the decoder (the model under test); ``encoder_path``: the model the task is rooted at."""
    from ..graph import open_model

    encoder = open_model(encoder_path)
    placement = placement or Placement()
    task = make_task(encoder_path, params, decoder_graph=graph, encoder_graph=encoder, placement=placement)
    if len(encoder.inputs) != 1:
        raise BadInput(f"the {task.name} task expects an encoder with one input; {encoder_path} has {encoder.inputs}")
    clips, audio = dataset(params, task.rate)
    return DecoderJudge(task, graph, clips, audio, params, encoder.inputs[0], placement=placement, encoder=encoder,
                        encoder_path=str(encoder_path))
