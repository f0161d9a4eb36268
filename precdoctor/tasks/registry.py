"""Which task a command runs: the built-in ``ctc`` and ``whisper``, or a plug-in ``package.module:factory``.

A plug-in factory is called as ``factory(model_path, params)`` with the
``TaskParams`` below and returns an object with ``name``, ``rate``,
``describe() -> dict``, ``feeds(audio, input_name) -> dict`` and
``transcribe(outputs) -> str``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import BadInput, require
from ..limits import PROXY_CLIPS

TASKS = ("ctc", "whisper")
WHISPER_PARTS = ("encoder", "decoder", "both")


@dataclass(frozen=True)
class TaskParams:
    """The task options of bisect and wer (``--task``, ``--data``, ...)."""

    name: str  # ctc, whisper or package.module:factory
    data: str
    limit: int | None = None
    label_free: bool = False
    numbers: bool = False  # spell digits out before scoring
    on_bad_audio: Literal["skip", "fail"] = "fail"
    proxy_clips: int = PROXY_CLIPS
    # whisper
    decoder: str | None = None
    tokenizer: str | None = None
    test_part: Literal["encoder", "decoder", "both"] = "encoder"
    # ctc
    vocab: str | None = None
    blank: int = 0
    delimiter: str = "|"
    normalize_audio: bool = True

    def check(self) -> None:
        """What can be checked before any work."""
        if self.name not in TASKS and ":" not in self.name:
            raise BadInput(f"unknown task {self.name!r}; expected ctc, whisper or package.module:factory")
        if not self.data:
            raise BadInput("--task needs --data (a NeMo manifest or a folder of audio with .txt transcripts)")
        if self.limit is not None and self.limit < 1:
            raise BadInput(f"--limit must be 1 or more, not {self.limit}")
        if self.test_part not in WHISPER_PARTS:
            raise BadInput(f"--under-test must be one of {', '.join(WHISPER_PARTS)}, not {self.test_part!r}")
        for module in ("soundfile", "soxr", "jiwer") + (("tokenizers",) if self.name == "whisper" else ()):
            require(module, "asr", "--task")


def make_task(model_path: str | Path, params: TaskParams):
    model_dir = Path(model_path).parent
    if params.name == "whisper":
        from .whisper import WhisperTask

        return WhisperTask(params.decoder or model_dir / "decoder.onnx", params.tokenizer or model_dir / "tokenizer.json",
                           test=params.test_part)
    if params.name == "ctc":
        from .ctc import CtcTask

        vocab = params.vocab or next((p for p in (model_dir / "vocab.json", model_dir / "vocab.txt") if p.is_file()), None)
        if vocab is None:
            raise BadInput("ctc task needs --vocab (vocab.json or one token per line)")
        return CtcTask(vocab, params.blank, params.delimiter, params.normalize_audio)
    mod, _, attr = params.name.partition(":")
    try:
        factory = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as exc:
        raise BadInput(f"cannot load task plug-in {params.name!r}: {exc}") from None
    return factory(str(model_path), params)
