"""A stand-in for ``polygraphy run ENGINE --model-type engine --trt ...`` (and ``polygraphy run MODEL.onnx --trt``, which
builds) where no TensorRT is installed: the real
Polygraphy (argument parsing, --load-inputs, --load-outputs, the comparison, the log and the exit status are its
own), with ONNX Runtime running STANDIN_MODEL (the plan's emulation) in place of the engine. The engine file must
exist (the trtexec stand-in's build writes it)."""
import os
import sys

from polygraphy.tools import main
from standin_trtexec import engine_model


def rewrite(argv):
    """``run ENGINE|MODEL.onnx --trt ...`` as ``run STANDIN_MODEL --onnxrt ...``; Polygraphy parses TensorRT's build flags
    (--fp16, --layer-precisions) with --onnxrt too and leaves them unused. ``--save-engine`` gets a file, as a build
    would write it, for the commands that load the engine next."""
    if argv[:1] != ["run"] or not os.path.isfile(argv[1]):
        raise SystemExit(f"stand-in: expected 'run ENGINE', an engine file that exists; got {argv[:2]}")
    rest, out = argv[2:], ["run", engine_model(argv[1]) if "--model-type" in argv else os.environ["STANDIN_MODEL"]]
    k = 0
    while k < len(rest):
        if rest[k] == "--model-type":
            k += 2
            continue
        if rest[k] == "--save-engine":
            with open(rest[k + 1], "w") as fh:
                fh.write("stand-in engine\n")
            k += 2
            continue
        out.append("--onnxrt" if rest[k] == "--trt" else rest[k])
        k += 1
    return out


if __name__ == "__main__":
    sys.argv = ["polygraphy"] + rewrite(sys.argv[1:])
    sys.exit(main())
