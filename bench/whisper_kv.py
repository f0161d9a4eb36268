"""Whisper tiny.en: decoding with and without the KV cache, through precdoctor's own decode loop, and
the demo's WER stage before (decoder.onnx, the whole prefix at every step) and after (the default,
decoder_model_merged.onnx).

    python bench/whisper_kv.py decode [--repeats 3]    # per clip, FP32, sessions warm: decode time per decoder
    python bench/whisper_kv.py wer [--repeats 3]       # the demo's WER stage (wer with the demo's four configurations)
    python bench/whisper_kv.py demo                    # the demo's bisect twice: --decoder decoder.onnx, then the default

Needs fixtures/build/whisper-tiny-en with the KV-cache decoders (python fixtures/whisper_decoders.py).
Wall clock on a possibly shared machine: each measurement waits (up to 5 minutes) for a quiet spell,
and each table says how much of its time some task waited for a CPU (Linux PSI), so a number taken
on a busy machine reads as one.
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


def wait_quiet(limit_s: float = 300.0, share: float = 10.0) -> None:
    """Until the last 10 s saw tasks waiting for a CPU under ``share`` % of the time (at most ``limit_s``)."""
    end = time.time() + limit_s
    while time.time() < end:
        try:
            if float(Path("/proc/pressure/cpu").read_text().split("avg10=")[1].split()[0]) < share:
                return
        except (OSError, IndexError, ValueError):
            return
        time.sleep(5)


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
    wait_quiet()
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


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, share of them some task waited for a CPU), after a quiet spell."""
    wait_quiet()
    stall, t0 = cpu_stall(), time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    wall = time.perf_counter() - t0
    return wall, (cpu_stall() - stall) / wall


def cmd_wer(repeats: int) -> dict:
    """``precdoctor wer`` with the demo's configurations (FP32, FP16, BF16, FP16 + the demo's 2 pins) on the demo
    clips: the transcriptions its bisect's WER stage makes, before and after, interleaved."""
    pins = ["--pin", "/encoder/ln_post/Pow", "--pin", "/encoder/ln_post/ReduceMean_1"]
    out = {"machine": machine(), "repeats": repeats, "runs": {}}
    for _ in range(repeats):
        for label, extra in (("before: decoder.onnx", ["--decoder", str(WHISPER / "decoder.onnx")]), ("after: default (merged)", [])):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-m", "precdoctor.interface.cli", "wer", str(WHISPER / "encoder.onnx"), "--task", "whisper", "--data",
                       str(AUDIO), "--precision", "fp16", "--other", *pins, "--json", f"{tmp}/w.json", *extra]
                wall, wait = _timed(cmd)
                r = json.loads(Path(f"{tmp}/w.json").read_text())
            run = out["runs"].setdefault(label, {"wall": [], "wait": [], "transcribe": [], "command": " ".join(cmd[1:]).replace(tmp, "OUT")})
            run["wall"].append(wall), run["wait"].append(wait), run["transcribe"].append(r["timing"]["transcribe"])
            run["rows"] = {row["config"]: (row["wer"], row["seconds"]) for row in r["task"]["rows"]}
    return out


def print_wer(r: dict) -> None:
    print(f"{r['machine']}; median of {r['repeats']} interleaved runs, each after a quiet spell\n")
    print("| decoder | wall (median) | transcribing 4 configurations x 10 clips (median) | per configuration (last run) | CPU wait (worst) |\n"
          "|---|---|---|---|---|")
    for label, x in r["runs"].items():
        per = ", ".join(f"{c} {s:.1f} s (WER {100 * w:.2f} %)" for c, (w, s) in x["rows"].items())
        print(f"| {label} | {statistics.median(x['wall']):.1f} s | {statistics.median(x['transcribe']):.1f} s | {per} | {max(x['wait']):.0%} |")


def cmd_demo() -> dict:
    """The demo's bisect (Makefile: encoder in FP16, --accept wer<=+0.5, the 10 demo clips), with each decoder."""
    out = {"machine": machine(), "runs": {}}
    for label, extra in (("before: decoder.onnx", ["--decoder", str(WHISPER / "decoder.onnx")]), ("after: default (merged)", [])):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "precdoctor.interface.cli", "bisect", str(WHISPER / "encoder.onnx"), "--precision", "fp16",
                   "--task", "whisper", "--data", str(AUDIO), "--accept", "wer<=+0.5", "--out", tmp, "--quiet", *extra]
            wall, wait = _timed(cmd)
            r = json.loads((Path(tmp) / "run.json").read_text())
        out["runs"][label] = {"wall": wall, "timing": r["timing"], "rows": {row["config"]: (row["wer"], row["seconds"]) for row in r["task"]["rows"]},
                              "pins": r["pins"], "cpu_wait_share": wait,
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
    ap.add_argument("what", choices=["decode", "wer", "demo"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    run, show = {"decode": (lambda: cmd_decode(a.repeats), print_decode), "wer": (lambda: cmd_wer(a.repeats), print_wer),
                 "demo": (cmd_demo, print_demo)}[a.what]
    r = run()
    show(r)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
