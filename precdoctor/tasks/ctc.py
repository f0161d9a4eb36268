"""CTC: raw waveform in, logits or log-probs [B, T, V] out, greedy decoding.

A transformers CTC export (wav2vec2, HuBERT, WavLM: input_values in, logits out, vocab.json beside it) is
read with its own conventions where the user gives none: the blank is the pad token (config.json's
pad_token_id, else the vocabulary's <pad>), the word delimiter tokenizer_config.json's word_delimiter_token
(else "|"), and the waveform normalized (zero mean, unit variance) unless preprocessor_config.json's do_normalize is false.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import BadInput
from ..core.files import read_json, read_text, regular_file
from ..core.limits import MAX_VOCAB_ID


def _from_table(table, path: Path) -> list[str]:
    """vocab.json: an object of token -> distinct id (0 or more); ids left out read as empty tokens."""
    if not isinstance(table, dict) or not table:
        raise BadInput(f"vocabulary {path} must be a JSON object of token -> id (Hugging Face vocab.json), not "
                       f"{'an empty one' if isinstance(table, dict) else type(table).__name__}")
    bad = next(((t, i) for t, i in table.items() if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < MAX_VOCAB_ID), None)
    if bad:
        raise BadInput(f"vocabulary {path}: token {bad[0]!r} has id {bad[1]!r}; ids are whole numbers from 0 to {MAX_VOCAB_ID - 1}")
    if len(set(table.values())) != len(table):
        raise BadInput(f"vocabulary {path} gives two tokens the same id")
    vocab = [""] * (max(table.values()) + 1)
    for tok, i in table.items():
        vocab[i] = tok
    return vocab


def load_vocab(path: str | Path) -> list[str]:
    """Hugging Face vocab.json (token -> id) or one token per line (line number = id)."""
    path = regular_file(path, "vocabulary")
    if path.suffix == ".json":
        return _from_table(read_json(path, "vocabulary"), path)
    vocab = read_text(path, "vocabulary").split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()  # the newline ending the last line
    if not vocab:
        raise BadInput(f"vocabulary {path} is empty")
    return [t.rstrip("\r") for t in vocab]


PAD = "<pad>"  # transformers' CTC tokenizers: the pad token is the blank


def _conventions(folder: Path) -> dict:
    """pad_token_id (config.json), word_delimiter_token (tokenizer_config.json), do_normalize (preprocessor_config.json)."""
    out: dict = {"_files": []}
    for name, keys in (("config.json", ("pad_token_id",)), ("tokenizer_config.json", ("word_delimiter_token",)),
                       ("preprocessor_config.json", ("do_normalize",))):
        path = folder / name
        if path.is_file():
            data = read_json(path, f"the CTC checkpoint's {name}")
            if isinstance(data, dict):
                out.update({k: data[k] for k in keys if k in data})
                out["_files"].append(str(path))
    return out


class CtcTask:
    name = "ctc"

    def __init__(self, vocab: str | Path, blank: int | None = None, delimiter: str | None = None, normalize: bool | None = None,
                 rate: int = 16000):
        self.vocab_path = str(vocab)
        self.vocab = load_vocab(vocab)
        conv = _conventions(Path(vocab).parent)
        self.files_read = [self.vocab_path] + conv.pop("_files")
        if blank is None:
            blank = conv.get("pad_token_id")
            if not isinstance(blank, int) or isinstance(blank, bool):
                blank = self.vocab.index(PAD) if PAD in self.vocab else 0
        if not 0 <= blank < len(self.vocab):
            raise BadInput(f"--blank {blank} is not an id of the vocabulary (0 to {len(self.vocab) - 1})")
        if delimiter is None:
            delimiter = conv.get("word_delimiter_token") if isinstance(conv.get("word_delimiter_token"), str) else "|"
        if normalize is None:
            normalize = conv.get("do_normalize") is not False
        self.blank, self.delimiter, self.normalize, self.rate = blank, delimiter, normalize, rate
        self.special = {t for t in self.vocab if t.startswith("<") and t.endswith(">")}

    def files(self) -> list[str]:
        return list(self.files_read)

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
        if logits.ndim != 2 or logits.dtype.kind != "f":
            raise BadInput(f"the ctc task reads logits [B, T, V] or [T, V]; the model's first output is {logits.dtype} "
                           f"{list(np.shape(next(iter(outputs.values()))))}")
        ids = np.argmax(np.nan_to_num(logits, nan=-np.inf), axis=-1)
        out, prev = [], None
        for i in ids:
            if i != prev and i != self.blank:
                tok = self.vocab[i] if i < len(self.vocab) else ""
                if tok not in self.special:
                    out.append(" " if tok == self.delimiter else tok)
            prev = i
        return " ".join("".join(out).split())
