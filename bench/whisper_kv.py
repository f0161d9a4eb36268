"""Whisper tiny.en: decoding with and without the KV cache, through precdoctor's own decode loop, and
the demo's WER stage before (decoder.onnx, the whole prefix at every step) and after (the default,
decoder_model_merged.onnx).

    python bench/whisper_kv.py decode [--repeats 3]    # per clip, FP32, sessions warm: decode time per decoder
    python bench/whisper_kv.py demo                    # the demo's bisect twice: --decoder decoder.onnx, then the default

Needs fixtures/build/whisper-tiny-en with the KV-cache decoders (python fixtures/whisper_decoders.py).
Wall clock on a possibly shared machine: each table says how much of its time some task waited for a
CPU (Linux PSI), so a number taken on a busy machine reads as one.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WHISPER = ROOT / "fixtures" / "build" / "whisper-tiny-en"
AUDIO = ROOT / "fixtures" / "audio"
DECODERS = ("decoder.onnx", "decoder_with_past_model.onnx", "decoder_model_merged.onnx")


def cpu_stall() -> float:
    """Seconds some task has waited for a CPU since boot (PSI 'some'); 0 where the kernel does not say."""
    try:
        return int(Path("/proc/pressure/cpu").read_text().split("total=")[1].split()[0]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


def machine() -> str:
    cpus = len(__import__("os").sched_getaffinity(0))
    return f"{platform.processor() or platform.machine()}, {cpus} CPU(s), Python {platform.python_version()}"


def cmd_decode(repeats: int) -> dict:
    from precdoctor.backends.reference import ReferenceRunner
    from precdoctor.graph import open_model
    from precdoctor.tasks.audio import load_audio
    from precdoctor.tasks.logmel import log_mel
    from precdoctor.tasks.whisper import WhisperTask

    enc = ReferenceRunner(open_model(WHISPER / "encoder.onnx"))
    clips = [json.loads(line)["audio_filepath"] for line in (AUDIO / "manifest.json").read_text().splitlines() if line.strip()]
    states = {c: enc({"mel": log_mel(load_audio(AUDIO / c, 16000))})["last_hidden_state"] for c in clips}
    tasks = {d: WhisperTask(WHISPER / d, WHISPER / "tokenizer.json") for d in DECODERS}
    runners = {d: t.decoder_for(None) for d, t in tasks.items()}
    for d, t in tasks.items():  # warm-up: every session of every shape built before timing
        for s in states.values():
            t.decode(s, runners[d])
    rows, stall, start = [], cpu_stall(), time.perf_counter()
    for c, s in states.items():
        times: dict[str, list[float]] = {d: [] for d in DECODERS}
        tokens = {}
        for _ in range(repeats):  # interleaved: a burst of load elsewhere lands on every decoder alike
            for d, t in tasks.items():
                t0 = time.perf_counter()
                tokens[d] = t.decode(s, runners[d])
                times[d].append(time.perf_counter() - t0)
        same = len({tuple(v) for v in tokens.values()}) == 1
        rows.append({"clip": c, "steps": len(tokens[DECODERS[0]]), "identical": same,
                     **{d: statistics.median(v) for d, v in times.items()}})
    wall = time.perf_counter() - start
    return {"machine": machine(), "repeats": repeats, "rows": rows, "cpu_wait_share": (cpu_stall() - stall) / wall}


def print_decode(r: dict) -> None:
    print(f"{r['machine']}; median of {r['repeats']} interleaved runs; some task waited for a CPU "
          f"{r['cpu_wait_share']:.0%} of the time\n")
    print("| clip | steps | decoder.onnx (no cache) | with past | merged | speed-up (merged) | tokens identical |\n|---|---|---|---|---|---|---|")
    tot = {d: 0.0 for d in DECODERS}
    for row in r["rows"]:
        for d in DECODERS:
            tot[d] += row[d]
        print(f"| {row['clip']} | {row['steps']} | " + " | ".join(f"{row[d] * 1000:.0f} ms" for d in DECODERS)
              + f" | {row[DECODERS[0]] / row[DECODERS[2]]:.1f}x | {row['identical']} |")
    print(f"| total | {sum(x['steps'] for x in r['rows'])} | " + " | ".join(f"{tot[d] * 1000:.0f} ms" for d in DECODERS)
          + f" | {tot[DECODERS[0]] / tot[DECODERS[2]]:.1f}x | |")


def cmd_demo() -> dict:
    """The demo's bisect (Makefile: encoder in FP16, --accept wer<=+0.5, the 10 demo clips), with each decoder."""
    out = {"machine": machine(), "runs": {}}
    for label, extra in (("before: decoder.onnx", ["--decoder", str(WHISPER / "decoder.onnx")]), ("after: default (merged)", [])):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "precdoctor.cli", "bisect", str(WHISPER / "encoder.onnx"), "--precision", "fp16",
                   "--task", "whisper", "--data", str(AUDIO), "--accept", "wer<=+0.5", "--out", tmp, "--quiet", *extra]
            stall, t0 = cpu_stall(), time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
            wall = time.perf_counter() - t0
            r = json.loads((Path(tmp) / "run.json").read_text())
        out["runs"][label] = {"wall": wall, "timing": r["timing"], "rows": {row["config"]: (row["wer"], row["seconds"]) for row in r["task"]["rows"]},
                              "pins": r["pins"], "cpu_wait_share": (cpu_stall() - stall) / wall,
                              "command": " ".join(c if c != tmp else "OUT" for c in cmd[1:])}
    return out


def print_demo(r: dict) -> None:
    print(r["machine"] + "\n")
    print("| decoder | wall | WER stage (task) | search (incl. WER confirmation) | transcription per configuration | pins | CPU wait |\n"
          "|---|---|---|---|---|---|---|")
    for label, x in r["runs"].items():
        per = ", ".join(f"{c} {s:.1f} s (WER {100 * w:.2f} %)" for c, (w, s) in x["rows"].items())
        print(f"| {label} | {x['wall']:.1f} s | {x['timing']['task']:.1f} s | {x['timing']['search']:.1f} s | {per} | "
              f"{', '.join(x['pins'])} | {x['cpu_wait_share']:.0%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["decode", "demo"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    r = cmd_decode(a.repeats) if a.what == "decode" else cmd_demo()
    (print_decode if a.what == "decode" else print_demo)(r)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
