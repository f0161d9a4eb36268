"""A WER-accepted bisect of Whisper tiny.en's encoder over many utterances, end to end (issue 20).

    python bench/whisper_wer_scale.py [--utterances 1000] [--device cpu|cuda] [--whisper DIR] [--data AUDIO]
                                      [--out bench/results/whisper_wer_scale.json]

The shared recordings hold 127 distinct clips (Hi-Fi TTS 6097: 116, FLEURS en: 10, jfk: 1); the manifest repeats
them in that order up to ``--utterances`` (said so in the result: a repeated clip costs what a new one would, but
adds no new speech). The run is ``precdoctor bisect ENCODER --task whisper --data MANIFEST --accept 'wer<=+0.5'`` as
the demo runs it, with ``--device``; the result has its wall time, stage timings, verdict, pins and WER rows.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import precdoctor  # noqa: E402 (after the sys.path line)

DATA = ROOT.parent / "shared" / "data" / "audio"
WHISPER = ROOT / "fixtures" / "build" / "whisper-tiny-en"


def rows(data: Path) -> list[dict]:
    """Every distinct labelled clip of the shared recordings, as manifest rows with absolute paths."""
    hifi = data / "hifitts-6097"
    out = []
    for line in (hifi / "manifest.json").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out.append({"audio_filepath": str((hifi / r["audio_filepath"]).resolve()), "text": r["text"]})
    for ogg in sorted((data / "fleurs-en").glob("*.ogg")):
        out.append({"audio_filepath": str(ogg.resolve()), "text": ogg.with_suffix(".txt").read_text().strip()})
    jfk = data / "jfk"
    out.append({"audio_filepath": str((jfk / "jfk.wav").resolve()), "text": (jfk / "jfk.txt").read_text().strip()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--utterances", type=int, default=1000)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--whisper", default=str(WHISPER))
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--accept", default="wer<=+0.5")
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "whisper_wer_scale.json"))
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="whisper-wer-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    distinct = rows(Path(a.data))
    manifest = work / "manifest.json"
    manifest.write_text("".join(json.dumps(distinct[k % len(distinct)]) + "\n" for k in range(a.utterances)))
    engine = precdoctor.EngineParams(device=a.device)
    task = precdoctor.TaskParams("whisper", str(manifest))
    t = time.perf_counter()
    r = precdoctor.bisect(Path(a.whisper) / "encoder.onnx", work / "run", precision="fp16", accept=[a.accept], engine=engine,
                          task=task, baselines=False, progress=False)
    wall = time.perf_counter() - t
    record = json.loads((work / "run" / "run.json").read_text())
    report = record.get("task") or {}
    gpu = None
    if a.device == "cuda":
        try:
            import torch

            gpu = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - a label only
            gpu = "CUDA (name unknown)"
    result = {"machine": f"{platform.node()} {os.cpu_count()} cores", "gpu": gpu, "load_avg_at_end": os.getloadavg(),
              "onnxruntime": __import__("onnxruntime").__version__, "device": a.device,
              "utterances": a.utterances, "distinct_clips": len(distinct),
              "data": f"the {len(distinct)} distinct labelled clips of the shared recordings, repeated in order to {a.utterances}",
              "accept": a.accept, "wall_s": wall, "verdict": r.verdict, "pins": sorted(r.pins), "evaluations": r.evaluations,
              "timing": r.timing, "wer_rows": report.get("rows"), "task": report.get("task")}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("device", "utterances", "wall_s", "verdict", "pins", "evaluations", "timing")}))


if __name__ == "__main__":
    main()
