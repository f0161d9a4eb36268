"""How long a command takes to stop on SIGTERM while ONNX Runtime is inside one long run (issue 22).

Builds a model whose single run takes tens of seconds (N MatMuls of 2048 x 2048), starts
``precdoctor compare`` on it, sends SIGTERM after each delay and measures the time to exit.

    python bench/signal_latency.py [--matmuls 24] [--delays 6 12 20 28]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def slow_model(path: Path, n: int) -> None:
    nodes = [helper.make_node("MatMul", ["x" if k == 0 else f"t{k - 1}", "w"], ["y" if k == n - 1 else f"t{k}"], name=f"mm{k}")
             for k in range(n)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2048, 2048])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2048, 2048])],
                          [numpy_helper.from_array((np.eye(2048) * 0.99).astype(np.float32), "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--matmuls", type=int, default=24)
    ap.add_argument("--delays", type=float, nargs="+", default=[6, 12, 20, 28])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, npz = Path(tmp) / "slow.onnx", Path(tmp) / "slow.npz"
        slow_model(model, a.matmuls)
        np.savez(npz, x=np.random.default_rng(0).random((2048, 2048), dtype=np.float32))
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}  # the code under test; run from its root
        for delay in a.delays:
            p = subprocess.Popen([sys.executable, "-m", "precdoctor.interface.cli", "compare", str(model), "--inputs", str(npz)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(delay)
            if p.poll() is not None:
                print(f"SIGTERM at {delay:g} s: the run had finished (exit {p.returncode})")
                continue
            t = time.perf_counter()
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate()
            last = (err.decode().strip().splitlines() or [""])[-1]
            print(f"SIGTERM at {delay:g} s: exit {p.returncode} after {time.perf_counter() - t:.2f} s  ({last[:60]})")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
