"""Artifacts as a set: written into a staging folder and moved into place at the end, run.json last; a failed
run leaves the previous set untouched and nothing half-written; a new run never mixes with an old one."""
import json

import pytest

from helpers import run_cli


def _bisect(planted_dir, out, name, *extra):
    return run_cli("bisect", planted_dir / f"{name}.onnx", "--inputs", planted_dir / f"{name}.npz", "--out", out, "--quiet",
                   "--no-baselines", *extra)


def _set(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith("journal")}


@pytest.mark.parametrize("where", ["report", "artifacts", "pins.json"])
def test_a_run_failing_at_the_end_leaves_the_previous_set_whole(where, planted_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    code, _, err = _bisect(planted_dir, out, "ln_overflow")
    assert code == 0, err
    before = _set(out)
    assert {"run.json", "pins.json", "trtexec.txt", "index.html", "model.mixed.onnx"} <= set(before)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    import precdoctor.pipelines.bisect.artifact_set as set_mod
    import precdoctor.report as report_mod

    if where == "report":
        monkeypatch.setattr(report_mod, "render_to", boom)
    elif where == "artifacts":
        monkeypatch.setattr(set_mod, "write_artifacts", boom)
    else:
        real = set_mod.dump_json
        monkeypatch.setattr(set_mod, "dump_json", lambda p, d: boom() if str(p).endswith("pins.json") else real(p, d))
    code, _, err = _bisect(planted_dir, out, "two_culprits")
    assert code in (2, 3) and "Traceback" not in err
    assert _set(out) == before, "the earlier set changed"
    assert not [p for p in out.iterdir() if p.name.startswith(".precdoctor-staging-")]


def test_a_new_run_removes_what_the_old_set_had_and_it_lacks(planted_dir, tmp_path):
    out = tmp_path / "run"
    assert _bisect(planted_dir, out, "ln_overflow")[0] == 0
    (out / "model.mixed.onnx.data").write_bytes(b"weights of another model")  # as a >2 GB model would leave
    (out / "notes.txt").write_text("the user's own file")
    code, _, err = _bisect(planted_dir, out, "two_culprits", "--no-report")
    assert code == 0, err
    names = {p.name for p in out.iterdir()}
    assert "index.html" not in names and "model.mixed.onnx.data" not in names and "notes.txt" in names
    run = json.loads((out / "run.json").read_text())
    assert run["model"].endswith("two_culprits.onnx") and json.loads((out / "pins.json").read_text())["model"].endswith("two_culprits.onnx")


def test_pins_rewrites_its_own_files_only(planted_dir, tmp_path):
    out = tmp_path / "run"
    assert _bisect(planted_dir, out, "ln_overflow")[0] == 0
    before = _set(out)
    code, stdout, err = run_cli("pins", out / "pins.json", "--format", "mixed-onnx", "--out", out)
    assert code == 0 and stdout.count("wrote") == 2, err
    after = _set(out)
    assert {k for k in before if before[k] != after.get(k)} <= {"model.mixed.onnx"} and set(after) == set(before)


def test_a_staging_folder_left_by_a_killed_run_is_swept(planted_dir, tmp_path):
    out = tmp_path / "run"
    dead = out / ".precdoctor-staging-999999999-abc"
    dead.mkdir(parents=True)
    (dead / "run.json").write_text("{}")
    assert _bisect(planted_dir, out, "healthy")[0] == 0
    assert not dead.exists() and json.loads((out / "run.json").read_text())["verdict"] == "healthy"


def test_a_journal_that_is_not_a_plain_file_is_set_aside(planted_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("not to be appended to\n")
    (out / "journal.jsonl").symlink_to(victim)
    code, _, err = _bisect(planted_dir, out, "two_culprits")
    assert code == 0, err
    assert victim.read_text() == "not to be appended to\n"
    assert (out / "journal.stale.jsonl").is_symlink() and (out / "journal.jsonl").is_file()


def test_a_set_that_would_replace_the_model_is_refused(planted_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    model = out / "model.mixed.onnx"  # the input model has the name of an artifact of the set
    model.write_bytes((planted_dir / "ln_overflow.onnx").read_bytes())
    code, _, err = run_cli("bisect", model, "--inputs", planted_dir / "ln_overflow.npz", "--out", out)
    assert code == 2 and "would replace" in err and len(err.strip().splitlines()) == 1
    assert model.read_bytes() == (planted_dir / "ln_overflow.onnx").read_bytes()
