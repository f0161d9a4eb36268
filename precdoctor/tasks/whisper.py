"""Whisper: log-mel in, encoder under test, greedy decoding with the English-only prompt."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import BadInput, require
from ..graph import open_model
from .logmel import SAMPLE_RATE, log_mel


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

        for p in (decoder, tokenizer):
            if not Path(p).is_file():
                raise BadInput(f"whisper task: file not found: {p}")
        meta_path = Path(meta) if meta else Path(decoder).with_name("whisper.json")
        m = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.sot, self.no_ts, self.eot = m.get("sot", 50257), m.get("no_timestamps", 50362), m.get("eot", 50256)
        self.suppress = np.array(m.get("suppress_ids", []), np.int64)
        self.suppress_begin = np.array(m.get("suppress_ids_begin", [220, self.eot]), np.int64)
        self.max_tokens = int(m.get("max_tokens", 224))
        self.tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer))
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
