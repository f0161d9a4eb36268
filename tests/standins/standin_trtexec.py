"""A stand-in for trtexec, for running precdoctor's verify scripts where no TensorRT is installed.

What it replicates from TensorRT's samples (v10.16 and 11.1; field-research.md 1.2-1.7): argv split at the first
'=' into a multimap (sampleOptions.cpp argsToArgumentsMap), one entry consumed per option so a repeated or unknown
option is "Unknown option" and exit 1; the list syntax of --loadInputs/--loadRefOutputs/--shapes (splitToStringVec,
splitNameAndValue: ',' then the last ':', single quotes); which flags a version has (STANDIN_TRT=10 or 11);
--accuracyThreshold required and > 0 with references; the raw files' sizes (loadFromFile: the size or twice it);
the accuracy losses in double (sampleUtils.cpp: l0, l1, l2, lInf, cos, NaN included) and "fail if loss >= threshold";
--exportOutput's JSON (values printed as C++ prints them: nan, -nan, inf). What it does not: build anything. The
"engine" is STANDIN_MODEL, an ONNX the test prepared (the plan's emulation), run with ONNX Runtime on CPU;
STANDIN_MODELS (JSON, the --onnx of a build -> a model) one per plan where a script builds two; STANDIN_NAN=1 puts
a NaN into the first output, STANDIN_BUILD_FAIL=1 fails every build.
"""
import json
import os
import sys

import numpy as np

COMMON = {"--onnx", "--saveEngine", "--loadEngine", "--skipInference", "--noTF32", "--minShapes", "--optShapes", "--maxShapes",
          "--shapes", "--loadInputs", "--exportOutput", "--iterations", "--warmUp", "--duration", "--profilingVerbosity",
          "--exportLayerInfo"}
ONLY = {"10": {"--fp16", "--bf16", "--precisionConstraints", "--layerPrecisions", "--layerOutputTypes"},
        "11": {"--loadRefOutputs", "--accuracyAlgorithm", "--atol", "--rtol", "--accuracyThreshold", "--refPair"}}


def split_vec(s, sep):
    out, start, n = [], 0, len(s)
    while start < n:
        idx = s.find(sep, start)
        idx = n if idx == -1 else idx
        out.append(s[start:idx])
        if idx == n - 1:
            out.append("")
        start = idx + 1
    return out


def name_value(s):
    q = split_vec(s, "'")
    if len(q) != 1:
        if len(q) != 3:
            raise ValueError("Found invalid number of 's when parsing " + s)
        return q[0] + q[1], q[2][1:]
    p = split_vec(s, ":")
    return (":".join(p[:-1]) if len(p) > 1 else p[0]), p[-1]


def pairs(value):
    out = {}
    for e in split_vec(value, ","):
        k, v = name_value(e)
        out.setdefault(k, v)  # map.insert: the first wins
    return out


def arguments(argv, version):
    allowed = COMMON | ONLY[version]
    seen = {}
    for a in argv:
        key, _, value = a.partition("=")
        if key in seen or key not in allowed:
            raise SystemExit(fail(f"Unknown option: {key} {value}"))
        seen[key] = value
    return seen


def fail(msg):
    print(msg)
    print("&&&& FAILED TensorRT.trtexec")
    return 1


def losses(algorithm, a, r, atol, rtol):
    a, r = a.astype(np.float64).ravel(), r.astype(np.float64).ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(a - r)
        if algorithm == "l0":
            return float(np.sum(d > atol + rtol * np.abs(r))) / a.size
        if algorithm == "l1":
            return float(np.sum(d)) / a.size
        if algorithm == "l2":
            return float(np.sum((a - r) ** 2)) / a.size
        if algorithm == "lInf":
            return float(np.max(d[~np.isnan(d)], initial=0.0))  # std::max(maxDiff, NaN) keeps maxDiff
        den = np.sqrt(np.sum(a * a)) * np.sqrt(np.sum(r * r))
        return 1.0 if den < 1e-12 else 1.0 - float(np.sum(a * r)) / den


def c_float(v):
    if np.isnan(v):
        return "-nan" if np.signbit(v) else "nan"
    if np.isinf(v):
        return "-inf" if v < 0 else "inf"
    return f"{v:g}"


def engine_model(engine):
    """The ONNX that stands in for ``engine``: STANDIN_MODELS (JSON: the --onnx a build was given -> a model) picks one
    per plan where a script builds two; else STANDIN_MODEL."""
    models = json.loads(os.environ.get("STANDIN_MODELS", "{}"))
    if models:
        try:
            with open(engine) as fh:
                built = json.load(fh)["onnx"]
        except (ValueError, KeyError):  # an engine a Polygraphy build wrote (polygraphy.txt): one plan only
            return os.environ["STANDIN_MODEL"]
        return models.get(built, os.environ.get("STANDIN_MODEL"))
    return os.environ["STANDIN_MODEL"]


def run_engine(args):
    import onnxruntime as ort

    sess = ort.InferenceSession(engine_model(args["--loadEngine"]), providers=["CPUExecutionProvider"])
    shapes = {k: [int(d) for d in v.split("x")] if v != "scalar" else [] for k, v in pairs(args.get("--shapes", "")).items()}
    feed = {}
    for name, file in pairs(args["--loadInputs"]).items():
        info = next(i for i in sess.get_inputs() if i.name == name)
        shape = shapes.get(name) or info.shape
        dtype = {"tensor(float)": np.float32, "tensor(int64)": np.int64}[info.type]
        feed[name] = np.fromfile(file, dtype=dtype).reshape(shape)
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(names, feed)))
    if os.environ.get("STANDIN_NAN"):
        outs[names[0]].reshape(-1)[0] = np.nan
    return outs


def check(args, outs):
    refs = pairs(args.get("--loadRefOutputs", ""))
    threshold = float(np.float32(float(args.get("--accuracyThreshold", "0"))))
    if refs and threshold <= 0:
        return fail("--accuracyThreshold (with a positive value) is required when --loadRefOutputs or --refPair is set.")
    algorithm = args.get("--accuracyAlgorithm", "l0")
    atol, rtol = (float(np.float32(float(args.get(k, "1e-5")))) for k in ("--atol", "--rtol"))
    failed = False
    for name, file in refs.items():
        if name not in outs:
            print(f"[W] Reference output tensor {name} not found in output bindings")
            continue
        a = outs[name]
        raw = open(file, "rb").read()
        if len(raw) not in (a.nbytes, 2 * a.nbytes):
            return fail(f"Cannot read {file}: size {len(raw)} is not {a.nbytes}")
        r = np.frombuffer(raw[:a.nbytes], dtype=np.float32).reshape(a.shape)
        loss = losses(algorithm, a, r, atol, rtol)
        bad = loss >= threshold
        failed |= bad
        print(f"Accuracy loss for tensor {name} ({algorithm}): {loss:.6f}" + (f" [FAIL: >= threshold {threshold}]" if bad else ""))
    if failed:
        print("Accuracy validation FAILED: one or more tensors exceeded the threshold.")
        return fail("")
    return 0


def export(path, outs):
    with open(path, "w") as fh:
        fh.write("[\n")
        for k, (name, v) in enumerate(outs.items()):
            fh.write(("  " if k == 0 else ", ") + '{ "name" : "' + name + '"\n')
            fh.write('  , "dimensions" : "' + "x".join(map(str, v.shape)) + '"\n')
            fh.write('  , "values" : [ ' + ", ".join(c_float(x) for x in v.reshape(-1)) + " ]\n  }\n")
        fh.write("]\n")


def main(argv):
    version = os.environ.get("STANDIN_TRT", "11")
    args = arguments(argv, version)
    if "--onnx" in args:
        if os.environ.get("STANDIN_BUILD_FAIL"):
            return fail("[E] Failed to parse onnx file")
        with open(args["--saveEngine"], "w") as fh:
            json.dump({"onnx": args["--onnx"], "tf32": "--noTF32" not in args, "flags": sorted(args)}, fh)
        return 0
    if not os.path.isfile(args.get("--loadEngine", "")):
        return fail("[E] engine file not found")
    outs = run_engine(args)
    if "--exportOutput" in args:
        export(args["--exportOutput"], outs)
    return check(args, outs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
