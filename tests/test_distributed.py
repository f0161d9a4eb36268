"""--workers on Ray (distributed.py): the same run record as the sequential run, a worker killed mid-evaluation
changing nothing, and one clear line when Ray is missing."""
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import run_cli

import precdoctor
from precdoctor.backends.distributed import RayRunners

ray = pytest.importorskip("ray")

TIMED = {"timing", "seconds", "versions"}


def _record(out):
    """run.json without what differs between any two runs (wall times), and with the folder named alike."""
    data = json.loads((out / "run.json").read_text())

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in TIMED}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v.replace(str(out), "OUT") if isinstance(v, str) else v

    return strip(data)


def _bisect(planted_dir, name, out, **kw):
    return precdoctor.bisect(planted_dir / f"{name}.onnx", out, inputs=[planted_dir / f"{name}.npz"] * 3, baselines=False,
                             report=False, **kw)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("name", ["two_culprits", "softmax_overflow"])
def test_two_workers_give_the_sequential_run_record(name, planted_dir, tmp_path, local_ray):
    seq = _bisect(planted_dir, name, tmp_path / "seq")
    stores = set(Path(tempfile.gettempdir()).glob("precdoctor-weights-*"))
    par = _bisect(planted_dir, name, tmp_path / "par", workers=2)
    assert seq.pins and par.pins == seq.pins and par.verdict == seq.verdict
    assert _record(tmp_path / "par") == _record(tmp_path / "seq")
    # each actor's temporary weight store is removed with it (ray.kill runs no finalizer)
    assert set(Path(tempfile.gettempdir()).glob("precdoctor-weights-*")) <= stores

    def journal(d):
        return [{k: v for k, v in json.loads(ln).items() if k != "seconds"} for ln in (d / "journal.jsonl").read_text().splitlines()]

    assert journal(tmp_path / "par") == journal(tmp_path / "seq")


def test_a_worker_killed_mid_evaluation_changes_nothing(planted_dir, tmp_path, local_ray, monkeypatch):
    seq = _bisect(planted_dir, "two_culprits", tmp_path / "seq")
    killed = []
    collect = RayRunners.collect

    def kill_one_then_collect(self, futures):
        if not killed:  # the evaluation is in flight: its first actor dies under it
            pid = ray.get(self.actors[0].pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        return collect(self, futures)

    monkeypatch.setattr(RayRunners, "collect", kill_one_then_collect)
    par = _bisect(planted_dir, "two_culprits", tmp_path / "par", workers=2)
    assert killed
    assert par.pins == seq.pins and par.evaluations == seq.evaluations
    assert _record(tmp_path / "par") == _record(tmp_path / "seq")


def test_workers_without_ray_is_one_line_exit_2(planted_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code, _, err = run_cli("bisect", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz",
                             "--out", tmp_path / "o", "--workers", "2")
    assert code == 2
    assert "precdoctor[scale]" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before any work


def test_idle_workers_start_the_next_cut_points_and_change_nothing(planted_dir, tmp_path, local_ray, monkeypatch):
    """One sample and two workers: one evaluation occupies one actor, the other starts the plans the search may ask
    for next; what it asks for is counted and journaled as in the sequential run."""
    seq = precdoctor.bisect(planted_dir / "two_culprits.onnx", tmp_path / "seq", inputs=[planted_dir / "two_culprits.npz"],
                            baselines=False, report=False)
    submitted = []
    submit = RayRunners.submit
    monkeypatch.setattr(RayRunners, "submit", lambda self, plan: submitted.append(plan.pins) or submit(self, plan))
    par = precdoctor.bisect(planted_dir / "two_culprits.onnx", tmp_path / "par", inputs=[planted_dir / "two_culprits.npz"],
                            baselines=False, report=False, workers=2)
    assert par.pins == seq.pins and par.evaluations == seq.evaluations
    assert _record(tmp_path / "par") == _record(tmp_path / "seq")
    asked = {frozenset(e.pins) for e in par.evaluation_log}
    assert any(p not in asked for p in submitted)  # some plans were started ahead and never needed
    assert len({p for p in submitted if p in asked}) > 1  # and some that were needed came from a worker


def test_worker_cpus_must_be_a_positive_count(planted_dir, tmp_path):
    code, _, err = run_cli("bisect", str(planted_dir / "two_culprits.onnx"), "--out", str(tmp_path / "o"), "--workers", "2",
                           "--worker-cpus", "0")
    assert code == 2 and "--worker-cpus must be 1 or more" in err
