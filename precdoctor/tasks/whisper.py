"""Whisper: log-mel in, greedy decoding with the English-only prompt; the encoder or the decoder under test.

The decoder is read as exported (tasks/decoding.py): decoder.onnx recomputing the prefix at every
step, or optimum's KV-cache decoders. Beside the encoder, the first found of
decoder_model_merged.onnx, decoder_with_past_model.onnx (with decoder_model.onnx for its first
step) and decoder.onnx is used: the cache makes each step read one token instead of the prefix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInput, require
from ..files import read_json, regular_file
from ..graph import open_model
from ..records import Record
from .decoding import DecodeLoop, Greedy, needs_first_step, read_layout
from .logmel import SAMPLE_RATE, log_mel
from .parts import WHISPER_PARTS

MAX_DECODE_TOKENS = 448  # Whisper's text context: no greedy decode runs longer
DECODERS = ("decoder_model_merged.onnx", "decoder_with_past_model.onnx", "decoder.onnx")  # preferred first, beside the encoder
FIRST_STEP = "decoder_model.onnx"  # optimum's decoder without past: the with-past decoder's first step


@dataclass
class WhisperMeta(Record):
    """whisper.json beside the decoder: the special tokens and what greedy decoding suppresses."""

    model: str | None = None
    source: str | None = None
    sot: int = 50257
    no_timestamps: int = 50362
    eot: int = 50256
    suppress_ids: list[int] = field(default_factory=list)
    suppress_ids_begin: list[int] | None = None  # default: [220, eot]
    max_tokens: int = 224

    def validate(self, where: str) -> None:
        ids = [self.sot, self.no_timestamps, self.eot, *self.suppress_ids, *(self.suppress_ids_begin or [])]
        if any(i < 0 for i in ids):
            raise BadInput(f"{where}: token ids are 0 or more")
        if not 1 <= self.max_tokens <= MAX_DECODE_TOKENS:
            raise BadInput(f"{where}.max_tokens: expected 1 to {MAX_DECODE_TOKENS}, found {self.max_tokens}")


def read_meta(path: Path) -> WhisperMeta:
    return WhisperMeta.from_json(read_json(path, "whisper metadata"), where=str(path)) if path.is_file() else WhisperMeta()


def default_decoder(folder: Path) -> Path:
    """The decoder beside the encoder: a KV-cache decoder where one is (see the module docstring)."""
    for name in DECODERS:
        if (folder / name).is_file() and (name != "decoder_with_past_model.onnx" or (folder / FIRST_STEP).is_file()):
            return folder / name
    return folder / DECODERS[-1]


class WhisperTask:
    """``test``: which part runs in reduced precision. ``encoder``: the encoder is the model under
    test and the decoder runs FP32; ``both``: the decoder also runs the configuration's naive plan
    (emulated); ``decoder``: the decoder is the model under test (tasks/decoder_judge.py drives it,
    the encoder runs FP32). A with-past decoder's first-step decoder always runs FP32: it is another
    model, not the one under test (put the merged decoder under test to cover the first step)."""

    name = "whisper"
    rate = SAMPLE_RATE

    def __init__(self, decoder: str | Path, tokenizer: str | Path, meta: str | Path | None = None, test: str = "encoder",
                 graph=None):
        tokenizers = require("tokenizers", "asr", "the whisper task")

        for p, what in ((decoder, "whisper task: decoder"), (tokenizer, "whisper task: tokenizer")):
            regular_file(p, what)
        meta_path = Path(meta) if meta else Path(decoder).with_name("whisper.json")
        m = read_meta(meta_path)
        self.eot, self.max_tokens = m.eot, m.max_tokens
        self.rules = Greedy((m.sot, m.no_timestamps), m.eot, tuple(m.suppress_ids),
                            tuple([220, m.eot] if m.suppress_ids_begin is None else m.suppress_ids_begin), m.max_tokens)
        try:
            self.tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # the tokenizers binding raises a bare Exception for any bad file
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise BadInput(f"whisper task: {tokenizer} is not a tokenizer.json ({first})") from None
        self._files = [str(decoder), str(tokenizer)] + ([str(meta_path)] if meta_path.is_file() else [])
        if test not in WHISPER_PARTS:
            raise BadInput(f"--under-test must be one of {', '.join(WHISPER_PARTS)}, not {test!r}")
        self.test, self.decoder_path = test, Path(decoder)
        self.decoder_graph = graph if graph is not None else open_model(decoder)
        self._open_decoder(Path(decoder))
        self._decoders: dict[str | None, object] = {}

    def _open_decoder(self, decoder: Path) -> None:
        self.first_graph = first = None
        if needs_first_step(self.decoder_graph):
            path = decoder.with_name(FIRST_STEP)
            if not path.is_file():
                raise BadInput(f"whisper task: {decoder.name} takes past key/values but no encoder states; its first step needs "
                               f"the decoder without past ({FIRST_STEP}) beside it")
            self.first_graph = open_model(path)
            first = read_layout(self.first_graph, f"whisper task: {path}")
            if first.kind != "prefix" or not first.encoder:
                raise BadInput(f"whisper task: {path} must read the prompt and the encoder states (no past key/values)")
            self._files.append(str(path))
        layout = read_layout(self.decoder_graph, f"whisper task: {decoder}", tuple(self.first_graph.outputs) if first else ())
        self.loop = DecodeLoop(layout, self.rules, first)
        self._first_runner = None

    def decoder_for(self, precision: str | None):
        """The decoder runner for a configuration: FP32 unless the decoder runs the naive plan too (``both``)."""
        key = precision if self.test == "both" else None
        if key not in self._decoders:
            if key is None:
                from ..backends.reference import ReferenceRunner

                self._decoders[key] = ReferenceRunner(self.decoder_graph)
            else:
                from ..backends.emulate import EmulationBackend
                from ..plan import Plan

                self._decoders[key] = EmulationBackend().runner(self.decoder_graph, Plan(key))
        return self._decoders[key]

    def files(self) -> list[str]:
        return list(self._files)

    def describe(self) -> dict:
        first = f", first step {FIRST_STEP} in FP32" if self.first_graph is not None else ""
        decoder = {"encoder": "FP32 (onnxruntime)", "both": "naive low precision per configuration (emulated)",
                   "decoder": "the model under test; the encoder FP32, computed once per clip"}[self.test]
        return {"task": self.name, "under_test": self.test, "max_tokens": self.max_tokens, "decoder": decoder,
                "decoder_file": self.decoder_path.name, "decoder_layout": self.loop.layout.kind + first}

    def feeds(self, audio: np.ndarray, input_name: str) -> dict:
        return {input_name: log_mel(audio)}

    def decode(self, states: np.ndarray, decoder, record: list | None = None, logits: list | None = None) -> list[int]:
        """Greedy tokens of one clip, the end token included when the decode stopped on it (decoding.DecodeLoop)."""
        if self.first_graph is not None and self._first_runner is None:
            from ..backends.reference import ReferenceRunner

            self._first_runner = ReferenceRunner(self.first_graph)
        return self.loop.run(decoder, states.astype(np.float32), self._first_runner, record, logits)

    def text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode([t for t in tokens if t < self.eot]).strip()

    def pieces(self, tokens: list[int]) -> str:
        """Tokens as the tokenizer writes them, special ones included (reports)."""
        return self.tokenizer.decode(list(tokens), skip_special_tokens=False)

    def transcribe_tokens(self, outputs: dict, precision: str | None = None) -> tuple[str, list[int]]:
        tokens = self.decode(next(iter(outputs.values())), self.decoder_for(precision))
        return self.text(tokens), tokens

    def transcribe(self, outputs: dict, precision: str | None = None) -> str:
        return self.transcribe_tokens(outputs, precision)[0]
