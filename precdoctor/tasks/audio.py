"""Audio clips and datasets: soundfile for decoding, soxr for resampling.

A dataset is a NeMo-style JSON-lines manifest (``audio_filepath`` relative to
the manifest, ``text``) or a folder of audio files with same-named ``.txt``
transcripts. Broken clips are named one by one; ``on_bad="skip"`` warns and
drops them, ``on_bad="fail"`` stops with exit 2.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import progress
from ..core.errors import BadInput, require
from ..core.files import read_text, regular_file

log = logging.getLogger("precdoctor")

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".opus", ".mp3")


@dataclass
class Clip:
    id: str
    path: Path
    text: str | None  # None: label-free, the FP32 model's output is the reference


def load_audio(path: str | Path, rate: int) -> np.ndarray:
    """Mono float32 at ``rate``; raises BadInput naming the file when it cannot be decoded."""
    sf = require("soundfile", "asr", "reading audio")
    soxr = require("soxr", "asr", "resampling audio")

    path = regular_file(path, "audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise BadInput(f"cannot decode audio {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if data.shape[0] == 0:
        raise BadInput(f"audio {path} has no samples")
    if not np.all(np.isfinite(data)):
        raise BadInput(f"audio {path} holds non-finite samples")
    audio = data.mean(axis=1)  # downmix
    if sr != rate:
        try:
            audio = soxr.resample(audio, sr, rate, quality="HQ").astype(np.float32)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise BadInput(f"cannot resample audio {path} from {sr} Hz to {rate} Hz: {exc}") from None
    return audio


def _manifest_row(line: str, where: str) -> tuple[str, str | None]:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        raise BadInput(f"{where}: not a JSON line") from None
    audio = row.get("audio_filepath") if isinstance(row, dict) else None
    if not isinstance(audio, str) or not audio.strip() or "\0" in audio:
        raise BadInput(f"{where}: not a manifest line with an 'audio_filepath' string")
    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise BadInput(f"{where}: 'text' must be a string (the reference transcript), not {type(text).__name__}")
    return audio, text


def _manifest(path: Path) -> list[Clip]:
    clips = []
    # split on newlines only: str.splitlines would also cut at U+2028 inside a JSON string
    for k, line in enumerate(read_text(path, "manifest").split("\n"), 1):
        if not line.strip():
            continue
        audio, text = _manifest_row(line, f"{path}:{k}")
        p = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        clips.append(Clip(Path(audio).stem, p, text))
    return clips


def _folder(path: Path) -> list[Clip]:
    clips = []
    for p in sorted(path.iterdir()):
        if p.suffix.lower() in AUDIO_EXTS:
            txt = p.with_suffix(".txt")
            clips.append(Clip(p.stem, p, read_text(txt, "transcript").strip() if txt.is_file() else None))
    return clips


def dataset(path: str | Path, limit: int | None = None, label_free: bool = False) -> list[Clip]:
    path = Path(path)
    if "\0" in str(path):
        raise BadInput(f"dataset path {str(path)!r} holds a NUL byte")
    if path.is_dir():
        manifest = path / "manifest.json"
        clips = _manifest(manifest) if manifest.is_file() else _folder(path)
    elif path.is_file():
        clips = _manifest(path) if path.suffix in (".json", ".jsonl") else [Clip(path.stem, path, None)]
    else:
        raise BadInput(f"dataset not found: {path}")
    if limit:
        clips = clips[:limit]
    if not clips:
        raise BadInput(f"dataset {path} holds no audio clips")
    if label_free:
        clips = [Clip(c.id, c.path, None) for c in clips]
    return clips


def load_clips(clips: list[Clip], rate: int, on_bad: str = "fail") -> list[tuple[Clip, np.ndarray]]:
    loaded = []
    with progress.stage("loading audio", len(clips), "clip") as s:
        for clip in clips:
            try:
                loaded.append((clip, load_audio(clip.path, rate)))
            except BadInput as exc:
                if on_bad == "fail":
                    raise
                log.warning(f"skipping {clip.id}: {exc}")
            s.advance()
    if not loaded:
        raise BadInput("no usable audio clip in the dataset")
    return loaded
