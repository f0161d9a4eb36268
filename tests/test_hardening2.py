"""Hardening, second round (issue 22): verify's folder as hostile input, one run per output folder, journals that
never replay another run's entries, limits on what a model or a selector may ask for, parse errors of the user's
files and third-party noise kept to one line of ours."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from helpers import ROOT, run_cli
from onnx import TensorProto, helper


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, planted_dir):
    """A bisect's folder (pins, mixed ONNX, reference/) to tamper with."""
    out = tmp_path_factory.mktemp("h2run") / "run"
    code, _, err = run_cli("bisect", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz", "--out", out,
                           "--quiet", "--no-baselines", "--no-report")
    assert code == 0, err
    return out


def _copy(run_folder, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(run_folder, d, symlinks=True)
    return d


def _one_error(code, err, needle):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("precdoctor: error:") and needle in lines[0], lines


# --- 1. verify: its inputs protected from its outputs, its folder's files read only from inside it


@pytest.mark.parametrize("target", ["pins.json", "reference/manifest.json", "reference/s0.out0.bin", "reference/s0.in0.bin"])
def test_verify_refuses_a_json_naming_a_file_it_reads(target, run_folder, tmp_path):
    d = _copy(run_folder, tmp_path)
    before = (d / target).read_bytes()
    code, _, err = run_cli("verify", d, "--backend", "emulate", "--json", d / target)
    _one_error(code, err, "which this command reads")
    assert (d / target).read_bytes() == before
    assert run_cli("verify", d, "--backend", "emulate")[0] == 0  # the folder still verifies


def test_verify_refuses_a_json_naming_the_model_it_emulates(run_folder, planted_dir, tmp_path):
    d = _copy(run_folder, tmp_path)
    model = d / json.loads((d / "pins.json").read_text())["model"]
    before = model.read_bytes()
    _one_error(*run_cli("verify", d, "--backend", "emulate", "--json", model)[::2], "which this command reads")
    assert model.read_bytes() == before


@pytest.mark.parametrize("what", ["folder", "file", "manifest"])
def test_verify_refuses_a_reference_symlinked_out_of_its_folder(what, run_folder, tmp_path):
    d = _copy(run_folder, tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if what == "folder":
        shutil.move(d / "reference", outside / "reference")
        os.symlink(outside / "reference", d / "reference")
    else:
        name = "s0.out0.bin" if what == "file" else "manifest.json"
        shutil.move(d / "reference" / name, outside / name)
        os.symlink(outside / name, d / "reference" / name)
    _one_error(*run_cli("verify", d, "--backend", "emulate")[::2], "resolves outside")


def test_verify_follows_a_symlink_that_stays_inside(run_folder, tmp_path):
    d = _copy(run_folder, tmp_path)
    shutil.move(d / "reference" / "s0.out0.bin", d / "kept.bin")
    os.symlink("../kept.bin", d / "reference" / "s0.out0.bin")
    assert run_cli("verify", d, "--backend", "emulate")[0] == 0


@pytest.mark.parametrize("field", ["pins", "forced"])
def test_verify_refuses_a_pin_naming_no_node(field, run_folder, tmp_path):
    d = _copy(run_folder, tmp_path)
    pins = json.loads((d / "pins.json").read_text())
    if field == "pins":
        pins["pins"].append("no such node")
    else:
        pins["forced"]["no such node"] = "typed FP32 by the schema"
    (d / "pins.json").write_text(json.dumps(pins))
    _one_error(*run_cli("verify", d, "--backend", "emulate")[::2], "'no such node'")


# --- 5. the user's files: parse errors in one line, third-party noise off stderr


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "precdoctor.interface.cli", *map(str, args)], check=False, capture_output=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("suffix", [".json", ".textproto", ".txt"])
def test_a_model_path_of_any_suffix_is_read_as_onnx(suffix, planted_dir, tmp_path):
    """onnx picks a text or JSON protobuf parser by the suffix; its ParseError was an internal error (exit 3)."""
    (tmp_path / f"m{suffix}").write_text('{"version": 1, "model": "whisper"}\n')
    _one_error(*run_cli("scan", tmp_path / f"m{suffix}")[::2], "is not a readable ONNX model")
    shutil.copy(planted_dir / "healthy.onnx", tmp_path / f"ok{suffix}")  # the bytes decide, not the name
    assert run_cli("scan", tmp_path / f"ok{suffix}", "--inputs", planted_dir / "healthy.npz")[0] == 0


@pytest.mark.parametrize("bad", [10**20, 2**70])
def test_whisper_metadata_ids_past_any_vocabulary(bad, tmp_path):
    from precdoctor.core.errors import BadInput
    from precdoctor.tasks.whisper import read_meta

    for field in ("eot", "suppress_ids"):
        meta = {"sot": 5, "eot": 4, "suppress_ids": [1, 2]}
        meta[field] = bad if field == "eot" else [1, bad]
        (tmp_path / "whisper.json").write_text(json.dumps(meta))
        with pytest.raises(BadInput, match="past any vocabulary"):
            read_meta(tmp_path / "whisper.json")


def test_onnx_runtime_log_lines_do_not_reach_stderr(tmp_path):
    """A kernel failing at run time: ONNX Runtime logged a coloured ERROR line to fd 2 before our one line."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 6])
    g = helper.make_graph([helper.make_node("Gather", ["x", "i"], ["r"], name="g"), helper.make_node("Relu", ["r"], ["y"], name="q")],
                          "g", [x, i], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "gather.onnx")
    np.savez(tmp_path / "in.npz", x=np.ones((4, 6), np.float32), i=np.array([0, 1, 99]))
    r = _cli("compare", tmp_path / "gather.onnx", "--inputs", tmp_path / "in.npz")
    _one_error(r.returncode, r.stderr.decode(), "ONNX Runtime failed")


# --- 2. one run per output folder; journals never replay another run's entries


def _bisect_args(model, npz, out):
    return ["bisect", model, "--inputs", npz, "--out", out, "--quiet", "--no-baselines", "--no-report"]


def test_a_second_run_into_a_held_folder_is_refused_naming_the_holder(planted_dir, tmp_path):
    from precdoctor.core.destinations import LOCK_NAME, FolderLock

    out = tmp_path / "out"
    with FolderLock(out, "bisect other.onnx"):
        code, _, err = run_cli(*_bisect_args(planted_dir / "ln_overflow.onnx", planted_dir / "ln_overflow.npz", out))
        _one_error(code, err, f"pid {os.getpid()}: precdoctor bisect other.onnx")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing of the refused run
    assert not out.exists()  # the lock made the folder and the run left nothing in it
    assert run_cli(*_bisect_args(planted_dir / "ln_overflow.onnx", planted_dir / "ln_overflow.npz", out))[0] == 0
    assert LOCK_NAME not in {p.name for p in out.iterdir()}  # a finished run leaves no lock file


def _reweighted(src, dst, scale):
    """The same graph and node names, other weights."""
    m = onnx.load(src)
    for t in m.graph.initializer:
        if t.data_type == TensorProto.FLOAT and len(t.dims) >= 2:  # weight matrices, not exponents or epsilons
            t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t) * np.float32(scale), t.name))
    onnx.save(m, dst)


def test_a_journal_never_replays_entries_another_run_wrote_into_it(planted_dir, tmp_path):
    """Two models with the same node names bisected into one folder at once: one run's header, the other's entries.
    A rerun must not take the other model's verdicts for its own."""
    npz = planted_dir / "two_culprits.npz"
    other = tmp_path / "other.onnx"
    _reweighted(planted_dir / "two_culprits.onnx", other, 1.01)
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(*_bisect_args(planted_dir / "two_culprits.onnx", npz, a))[0] == 0
    assert run_cli(*_bisect_args(other, npz, b))[0] == 0
    header = (a / "journal.jsonl").read_text().splitlines()[0]
    foreign = (b / "journal.jsonl").read_text().splitlines()[1:]
    (a / "journal.jsonl").write_text("\n".join([header, *foreign]) + "\n")
    assert run_cli(*_bisect_args(planted_dir / "two_culprits.onnx", npz, a))[0] == 0
    assert json.loads((a / "run.json").read_text())["evaluations_resumed"] == 0


def test_the_journal_fingerprint_covers_external_weights(planted_dir, tmp_path):
    npz = planted_dir / "ln_overflow.npz"
    d = tmp_path / "m"
    d.mkdir()
    m = onnx.load(planted_dir / "ln_overflow.onnx")
    onnx.save(m, d / "model.onnx", save_as_external_data=True, location="w.data", size_threshold=0, all_tensors_to_one_file=True)
    out = tmp_path / "out"
    assert run_cli(*_bisect_args(d / "model.onnx", npz, out))[0] == 0
    assert run_cli(*_bisect_args(d / "model.onnx", npz, out))[0] == 0
    assert json.loads((out / "run.json").read_text())["evaluations_resumed"] > 0  # the same model replays
    onnx_bytes = (d / "model.onnx").read_bytes()
    data = bytearray((d / "w.data").read_bytes())
    for t in onnx.load(d / "model.onnx", load_external_data=False).graph.initializer:
        info = {e.key: e.value for e in t.external_data}
        if len(t.dims) >= 2:  # the weight matrices, scaled in place in the weights file
            at, n = int(info.get("offset", 0)), int(info["length"])
            data[at:at + n] = (np.frombuffer(bytes(data[at:at + n]), np.float32) * np.float32(1.01)).tobytes()
    (d / "w.data").write_bytes(bytes(data))
    assert (d / "model.onnx").read_bytes() == onnx_bytes  # only the weights file changed
    assert run_cli(*_bisect_args(d / "model.onnx", npz, out))[0] == 0
    assert json.loads((out / "run.json").read_text())["evaluations_resumed"] == 0


# --- 3. limits: what a model or a selector may ask for, refused before any work, each raisable


def _long_named(planted_dir, tmp_path, name):
    m = onnx.load(planted_dir / "healthy.onnx")
    m.graph.node[0].name = name
    onnx.save(m, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


def test_a_backtracking_selector_ends(planted_dir, tmp_path):
    """re:^(a+)+$ against a name of 40 a's and a '!' ran for hours in a backtracking engine."""
    model = _long_named(planted_dir, tmp_path, "a" * 40 + "!")
    r = _cli("compare", model, "--inputs", planted_dir / "healthy.npz", "--pin", "re:^(a+)+$", timeout=60)
    _one_error(r.returncode, r.stderr.decode(), "matches no node")


def test_a_selector_past_its_time_bound_is_one_line(planted_dir, tmp_path, monkeypatch):
    model = _long_named(planted_dir, tmp_path, "x" * 3000)
    monkeypatch.setenv("PRECDOCTOR_SELECTOR_MATCH_SECONDS", "0.05")
    code, _, err = run_cli("compare", model, "--inputs", planted_dir / "healthy.npz", "--pin", "re:(x+x+)+y")
    _one_error(code, err, "PRECDOCTOR_SELECTOR_MATCH_SECONDS")
    monkeypatch.setenv("PRECDOCTOR_SELECTOR_MATCH_SECONDS", "0.05")
    assert run_cli("compare", model, "--inputs", planted_dir / "healthy.npz", "--pin", "re:x+")[0] == 0  # a sane one matches


def _loop(trips, cond_out="Identity"):
    """y = x * 0.5^trips by a Loop with a constant trip count, and a scan output of every iteration."""
    body_in = [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c", TensorProto.BOOL, []),
               helper.make_tensor_value_info("a", TensorProto.FLOAT, [4])]
    body_out = [helper.make_tensor_value_info("co", TensorProto.BOOL, []), helper.make_tensor_value_info("ao", TensorProto.FLOAT, [4]),
                helper.make_tensor_value_info("so", TensorProto.FLOAT, [4])]
    cond = (helper.make_node("Identity", ["c"], ["co"], name="b_cond") if cond_out == "Identity" else
            helper.make_node("Less", ["ao", "tiny"], ["lt"], name="b_less"))
    nodes = [helper.make_node("Mul", ["a", "half"], ["ao"], name="b_mul"), cond, helper.make_node("Identity", ["ao"], ["so"], name="b_scan")]
    if cond_out != "Identity":  # stops when the first element falls under 1e-3: a while loop with a huge bound
        nodes += [helper.make_node("Gather", ["lt", "zero"], ["first"], name="b_first"),
                  helper.make_node("Not", ["first"], ["co"], name="b_not")]
    body = helper.make_graph(nodes, "body", body_in, body_out)
    g = helper.make_graph([helper.make_node("Loop", ["M", "cond", "x"], ["y", "s"], name="loop", body=body)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4]), helper.make_tensor_value_info("s", TensorProto.FLOAT, [None, 4])],
                          [onnx.numpy_helper.from_array(np.array(trips, np.int64), "M"), onnx.numpy_helper.from_array(np.array(True), "cond"),
                           onnx.numpy_helper.from_array(np.float32(0.5), "half"), onnx.numpy_helper.from_array(np.float32(1e-3), "tiny"),
                           onnx.numpy_helper.from_array(np.array(0, np.int64), "zero")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_a_constant_trip_count_past_the_limit_is_refused_before_any_work(tmp_path, monkeypatch):
    """A trip count of 1e9 hung the run or aborted it with std::bad_alloc."""
    onnx.save(_loop(10**9), tmp_path / "loop.onnx")
    code, _, err = run_cli("compare", tmp_path / "loop.onnx", "--input-shapes", "x:[4]")
    _one_error(code, err, "PRECDOCTOR_MAX_LOOP_TRIPS")
    onnx.save(_loop(50), tmp_path / "small.onnx")
    monkeypatch.setenv("PRECDOCTOR_MAX_LOOP_TRIPS", "10")
    _one_error(*run_cli("compare", tmp_path / "small.onnx", "--input-shapes", "x:[4]")[::2], "50 iterations")
    monkeypatch.setenv("PRECDOCTOR_MAX_LOOP_TRIPS", "100")  # raised: it runs
    assert run_cli("compare", tmp_path / "small.onnx", "--input-shapes", "x:[4]")[0] in (0, 1)


def test_a_while_loop_with_a_huge_bound_is_not_refused(tmp_path):
    """Exporters write while loops as a Loop with trip count INT64_MAX and a condition: the condition stops it."""
    onnx.save(_loop(2**63 - 1, cond_out="Less"), tmp_path / "while.onnx")
    np.savez(tmp_path / "x.npz", x=np.ones(4, np.float32))
    assert run_cli("compare", tmp_path / "while.onnx", "--inputs", tmp_path / "x.npz")[0] in (0, 1)


def _chain(n):
    nodes = [helper.make_node("Relu" if k % 2 else "Neg", ["x" if k == 0 else f"t{k - 1}"], ["y" if k == n - 1 else f"t{k}"], name=f"n{k}")
             for k in range(n)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_a_graph_past_the_node_limit_is_refused_and_the_limit_can_be_raised(tmp_path, monkeypatch):
    onnx.save(_chain(300), tmp_path / "chain.onnx")
    monkeypatch.setenv("PRECDOCTOR_MAX_GRAPH_NODES", "200")
    _one_error(*run_cli("scan", tmp_path / "chain.onnx", "--input-shapes", "x:[1,8]")[::2], "300 nodes")
    monkeypatch.setenv("PRECDOCTOR_MAX_GRAPH_NODES", "not a number")
    _one_error(*run_cli("scan", tmp_path / "chain.onnx", "--input-shapes", "x:[1,8]")[::2], "is not a number")
    monkeypatch.setenv("PRECDOCTOR_MAX_GRAPH_NODES", "1000")
    assert run_cli("scan", tmp_path / "chain.onnx", "--input-shapes", "x:[1,8]")[0] == 0


def test_a_tensor_past_the_element_limit_is_refused_before_any_run(tmp_path):
    """Expand to [100000 * n, n]: on n = 50000 that is 5e9 elements, which ONNX Runtime failed to allocate."""
    g = helper.make_graph([helper.make_node("Shape", ["x"], ["s"], name="shape"), helper.make_node("Mul", ["s", "k"], ["s2"], name="mul"),
                           helper.make_node("Expand", ["x", "s2"], ["e"], name="expand"), helper.make_node("Relu", ["e"], ["y"], name="relu")],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])],
                          [onnx.numpy_helper.from_array(np.array([100000, 1], np.int64), "k")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "expand.onnx")
    _one_error(*run_cli("compare", tmp_path / "expand.onnx", "--input-shapes", "x:[1,50000]")[::2], "PRECDOCTOR_MAX_TENSOR_ELEMENTS")
    assert run_cli("compare", tmp_path / "expand.onnx", "--input-shapes", "x:[1,5]")[0] in (0, 1)


def _matmuls(model, npz, count, rows, width):
    """``count`` MatMuls by a ``width``-square identity in a chain, and an input of ones for it."""
    nodes = [helper.make_node("MatMul", ["x" if k == 0 else f"t{k - 1}", "w"], ["y" if k == count - 1 else f"t{k}"],
                              name=f"mm{k}") for k in range(count)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, width])],
                          [onnx.numpy_helper.from_array(np.eye(width, dtype=np.float32), "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, model)
    np.savez(npz, x=np.ones((rows, width), np.float32))


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads CPU time from /proc")
def test_sigterm_inside_a_long_onnx_runtime_run_ends_the_command(tmp_path):
    """One ORT run of minutes (400 MatMuls of 2048 x 2048): SIGTERM used to wait for the run to end (Python runs
    signal handlers between bytecodes only); the run is now stopped and the command exits 143 at once."""
    _matmuls(tmp_path / "slow.onnx", tmp_path / "x.npz", count=400, rows=2048, width=2048)
    proc = subprocess.Popen([sys.executable, "-m", "precdoctor.interface.cli", "compare", str(tmp_path / "slow.onnx"), "--inputs",
                             str(tmp_path / "x.npz")], env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and _cpu_seconds(proc.pid) < 15:  # well past start-up: inside the one long run
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)  # the run it is inside takes minutes: before, it ended only then
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err.decode().strip().splitlines()[-1].startswith("precdoctor: terminated"), err


def test_a_full_disk_is_said_in_words(tmp_path):
    """A weight store that cannot be written whole (here a file size limit, which fails the write as a full disk
    does) read "409600 requested and 75000 written"."""
    import resource

    _matmuls(tmp_path / "m.onnx", tmp_path / "x.npz", count=1, rows=1, width=640)

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    r = subprocess.run([sys.executable, "-m", "precdoctor.interface.cli", "compare", str(tmp_path / "m.onnx"), "--inputs", str(tmp_path / "x.npz")],
                       check=False, capture_output=True, timeout=300, preexec_fn=limited,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(tmp_path)})
    _one_error(r.returncode, r.stderr.decode(), "no space left")
    assert "weight store" in r.stderr.decode() and "TMPDIR" in r.stderr.decode()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("precdoctor-weights-")]  # and its folder removed


def test_a_decoder_cache_that_does_not_fit_is_said_naming_the_cache_and_the_step(tmp_path):
    """The with-past decoder's present comes out transposed ([1, past+1, 1, D] for a past declared [1, 1, past, D]):
    ONNX Runtime's message named neither the cache nor the decode step."""
    import toy_decoders

    from precdoctor.core.errors import BadInput
    from precdoctor.tasks.whisper import WhisperTask

    toy = toy_decoders.write(tmp_path / "toy")
    m = onnx.load(toy / "decoder_with_past_model.onnx")
    present = "present.0.decoder.key"
    for n in m.graph.node:
        n.input[:] = ["kv_cat" if i == present else i for i in n.input]
        n.output[:] = ["kv_cat" if o == present else o for o in n.output]
    m.graph.node.append(helper.make_node("Transpose", ["kv_cat"], [present], name="/decoder/k/Transpose", perm=[0, 2, 1, 3]))
    out = next(o for o in m.graph.output if o.name == present)
    out.CopyFrom(helper.make_tensor_value_info(present, TensorProto.FLOAT, [1, "past + 1", 1, toy_decoders.D]))
    onnx.save(m, toy / "decoder_with_past_model.onnx")
    task = WhisperTask(toy / "decoder_with_past_model.onnx", toy / "tokenizer.json")
    states = np.random.default_rng(0).standard_normal((1, toy_decoders.T, toy_decoders.D)).astype(np.float32)
    with pytest.raises(BadInput) as got:
        task.decode(states, task.decoder_for(None))
    msg = str(got.value)
    assert "decode step 1" in msg and present in msg and "past_key_values.0.decoder.key" in msg and "\n" not in msg


@pytest.mark.parametrize("command", ["compare", "pins", "check-engine"])
def test_a_forced_node_naming_no_node_refuses_the_pins_file_everywhere(command, run_folder, planted_dir, tmp_path):
    d = _copy(run_folder, tmp_path)
    pins = json.loads((d / "pins.json").read_text())
    pins["forced"]["no such node"] = "typed FP32 by the schema"
    (d / "pins.json").write_text(json.dumps(pins))
    model = planted_dir / "ln_overflow.onnx"
    layers = tmp_path / "layers.json"
    layers.write_text(json.dumps({"Layers": [{"Name": "x", "Outputs": [{"Name": "x:0", "Format/Datatype": "Float"}]}]}))
    args = {"compare": ["compare", model, "--inputs", planted_dir / "ln_overflow.npz", "--pins", d / "pins.json"],
            "pins": ["pins", d / "pins.json", "--format", "trtexec", "--out", tmp_path / "o"],
            "check-engine": ["check-engine", model, "--pins", d / "pins.json", "--layer-info", layers]}[command]
    _one_error(*run_cli(*args)[::2], "'no such node'")


@pytest.mark.parametrize("target", ["whisper.json", "decoder_model.onnx", "clips/jfk.txt", "clips/jfk.wav"])
def test_wer_refuses_a_json_naming_a_file_the_whisper_task_reads(target, tmp_path):
    """whisper.json and the first-step decoder beside the decoder, and a folder dataset's files, are inputs too."""
    import toy_decoders

    toy = toy_decoders.write(tmp_path / "toy")
    clips = toy / "clips"
    clips.mkdir()
    shutil.copy(ROOT / "fixtures" / "audio" / "jfk.wav", clips / "jfk.wav")
    (clips / "jfk.txt").write_text("red cat\n")
    before = (toy / target).read_bytes()
    code, _, err = run_cli("wer", toy / "encoder.onnx", "--task", "whisper", "--data", clips,
                           "--decoder", toy / "decoder_with_past_model.onnx", "--json", toy / target)
    _one_error(code, err, "which this command reads")
    assert (toy / target).read_bytes() == before


def test_report_refuses_an_output_naming_a_command_file_it_embeds(run_folder, tmp_path):
    d = _copy(run_folder, tmp_path)
    before = (d / "trtexec.txt").read_bytes()
    _one_error(*run_cli("report", d / "run.json", "-o", d / "trtexec.txt")[::2], "which this command reads")
    assert (d / "trtexec.txt").read_bytes() == before


@pytest.mark.parametrize("target", ["journal.jsonl", "journal.targets.jsonl", "reference/s0.in0.bin", "pins.json"])
def test_bisect_refuses_a_json_onto_its_own_set_or_journal(target, planted_dir, tmp_path):
    """--json into --out onto the journal replaced the state a rerun resumes from; onto reference/ it replaced a file
    the verify scripts read, after the set was moved into place."""
    out = tmp_path / "out"
    args = _bisect_args(planted_dir / "ln_overflow.onnx", planted_dir / "ln_overflow.npz", out)
    assert run_cli(*args)[0] == 0
    before = (out / target).read_bytes()
    _one_error(*run_cli(*args, "--json", out / target)[::2], "the run's own")
    assert (out / target).read_bytes() == before
    assert run_cli(*args, "--json", out / "result.json")[0] == 0  # a file of its own beside the set is fine
