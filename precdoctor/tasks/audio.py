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

from ..errors import BadInput, require

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

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise BadInput(f"cannot decode audio {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if data.shape[0] == 0:
        raise BadInput(f"audio {path} has no samples")
    audio = data.mean(axis=1)  # downmix
    if sr != rate:
        audio = soxr.resample(audio, sr, rate, quality="HQ").astype(np.float32)
    if not np.all(np.isfinite(audio)):
        raise BadInput(f"audio {path} holds non-finite samples")
    return audio


def _manifest(path: Path) -> list[Clip]:
    clips = []
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio = row["audio_filepath"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BadInput(f"{path}:{k}: not a manifest line with 'audio_filepath'") from None
        p = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        clips.append(Clip(Path(audio).stem, p, row.get("text")))
    return clips


def _folder(path: Path) -> list[Clip]:
    clips = []
    for p in sorted(path.iterdir()):
        if p.suffix.lower() in AUDIO_EXTS:
            txt = p.with_suffix(".txt")
            clips.append(Clip(p.stem, p, txt.read_text(encoding="utf-8").strip() if txt.is_file() else None))
    return clips


def dataset(path: str | Path, limit: int | None = None, label_free: bool = False) -> list[Clip]:
    path = Path(path)
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
    for clip in clips:
        try:
            loaded.append((clip, load_audio(clip.path, rate)))
        except BadInput as exc:
            if on_bad == "fail":
                raise
            log.warning(f"skipping {clip.id}: {exc}")
    if not loaded:
        raise BadInput("no usable audio clip in the dataset")
    return loaded
