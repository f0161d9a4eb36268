"""Whisper: log-mel in, encoder under test, greedy decoding with the English-only prompt."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInput, require
from ..files import read_json, regular_file
from ..graph import open_model
from ..records import Record
from .logmel import SAMPLE_RATE, log_mel

MAX_DECODE_TOKENS = 448  # Whisper's text context: no greedy decode runs longer


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


class WhisperTask:
    """``encoder``: the model under test, [1, 80, 3000] log-mel -> [1, 1500, D].

    The decoder (tokens + encoder states -> logits) runs FP32 on ONNX Runtime
    unless ``test`` is ``decoder`` or ``both``: then it runs the configuration's
    naive low-precision plan (emulated), and with ``decoder`` the encoder stays FP32.
    """

    name = "whisper"
    rate = SAMPLE_RATE

    def __init__(self, decoder: str | Path, tokenizer: str | Path, meta: str | Path | None = None, test: str = "encoder"):
        tokenizers = require("tokenizers", "asr", "the whisper task")

        for p, what in ((decoder, "whisper task: decoder"), (tokenizer, "whisper task: tokenizer")):
            regular_file(p, what)
        meta_path = Path(meta) if meta else Path(decoder).with_name("whisper.json")
        m = read_meta(meta_path)
        self.sot, self.no_ts, self.eot = m.sot, m.no_timestamps, m.eot
        self.suppress = np.array(m.suppress_ids, np.int64)
        self.suppress_begin = np.array([220, self.eot] if m.suppress_ids_begin is None else m.suppress_ids_begin, np.int64)
        self.max_tokens = m.max_tokens
        try:
            self.tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # the tokenizers binding raises a bare Exception for any bad file
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise BadInput(f"whisper task: {tokenizer} is not a tokenizer.json ({first})") from None
        self._files = [str(decoder), str(tokenizer), str(meta_path)] if meta_path.is_file() else [str(decoder), str(tokenizer)]
        if test not in ("encoder", "decoder", "both"):
            raise BadInput(f"--under-test must be encoder, decoder or both, not {test!r}")
        self.test = test
        self.decoder_graph = open_model(decoder)
        self._decoders: dict[str | None, object] = {}

    def decoder_for(self, precision: str | None):
        """The decoder runner for a configuration: FP32 unless the decoder is under test."""
        key = precision if self.test in ("decoder", "both") else None
        if key not in self._decoders:
            if key is None:
                from ..backends.reference import ReferenceRunner

                self._decoders[key] = ReferenceRunner(self.decoder_graph)
            else:
                from ..backends.emulation import EmulationBackend
                from ..plan import Plan

                self._decoders[key] = EmulationBackend().runner(self.decoder_graph, Plan(key))
        return self._decoders[key]

    def files(self) -> list[str]:
        return list(self._files)

    def describe(self) -> dict:
        return {"task": self.name, "under_test": self.test, "max_tokens": self.max_tokens,
                "decoder": "FP32 (onnxruntime)" if self.test == "encoder" else "naive low precision per configuration (emulated)"}

    def feeds(self, audio: np.ndarray, input_name: str) -> dict:
        return {input_name: log_mel(audio)}

    def transcribe(self, outputs: dict, precision: str | None = None) -> str:
        decoder = self.decoder_for(precision)
        states = next(iter(outputs.values())).astype(np.float32)
        tokens = [self.sot, self.no_ts]
        prompt = len(tokens)
        for _ in range(self.max_tokens):
            logits = decoder({"tokens": np.array([tokens], np.int64), "encoder_hidden_states": states})["logits"][0, -1]
            logits = logits.astype(np.float32).copy()
            logits[self.suppress[self.suppress < logits.size]] = -np.inf
            if len(tokens) == prompt:
                logits[self.suppress_begin[self.suppress_begin < logits.size]] = -np.inf
            nxt = int(np.argmax(logits))
            if nxt == self.eot:
                break
            tokens.append(nxt)
        text_tokens = [t for t in tokens[prompt:] if t < self.eot]
        return self.tokenizer.decode(text_tokens).strip()
