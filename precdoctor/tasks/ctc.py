"""CTC: raw waveform in, logits or log-probs [B, T, V] out, greedy decoding."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import BadInput


def load_vocab(path: str | Path) -> list[str]:
    """Hugging Face vocab.json (token -> id) or one token per line (line number = id)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"vocabulary not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            table = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"vocabulary {path} is not JSON: {exc}") from None
        vocab = [""] * (max(table.values()) + 1)
        for tok, i in table.items():
            vocab[i] = tok
        return vocab
    return text.splitlines()


class CtcTask:
    name = "ctc"

    def __init__(self, vocab: str | Path, blank: int = 0, delimiter: str = "|", normalize: bool = True, rate: int = 16000):
        self.vocab_path = str(vocab)
        self.vocab = load_vocab(vocab)
        self.blank, self.delimiter, self.normalize, self.rate = blank, delimiter, normalize, rate
        self.special = {t for t in self.vocab if t.startswith("<") and t.endswith(">")}

    def files(self) -> list[str]:
        return [self.vocab_path]

    def describe(self) -> dict:
        return {"task": self.name, "vocab": len(self.vocab), "blank": self.blank, "delimiter": self.delimiter, "normalize": self.normalize}

    def feeds(self, audio: np.ndarray, input_name: str) -> dict:
        x = audio.astype(np.float32)
        if self.normalize:  # wav2vec2's feature extractor: zero mean, unit variance
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        return {input_name: x[None, :]}

    def transcribe(self, outputs: dict) -> str:
        logits = np.asarray(next(iter(outputs.values())))
        if logits.ndim == 3:
            logits = logits[0]
        ids = np.argmax(np.nan_to_num(logits, nan=-np.inf), axis=-1)
        out, prev = [], None
        for i in ids:
            if i != prev and i != self.blank:
                tok = self.vocab[i] if i < len(self.vocab) else ""
                if tok not in self.special:
                    out.append(" " if tok == self.delimiter else tok)
            prev = i
        return " ".join("".join(out).split())
