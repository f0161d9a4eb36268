"""A stand-in for ``polygraphy run ENGINE --model-type engine --trt ...`` where no TensorRT is installed: the real
Polygraphy (argument parsing, --load-inputs, --load-outputs, the comparison, the log and the exit status are its
own), with ONNX Runtime running STANDIN_MODEL (the plan's emulation) in place of the engine. The engine file must
exist (the trtexec stand-in's build writes it)."""
import os
import sys

from polygraphy.tools import main


def rewrite(argv):
    if argv[:1] != ["run"] or not os.path.isfile(argv[1]):
        raise SystemExit(f"stand-in: expected 'run ENGINE', an engine file that exists; got {argv[:2]}")
    rest, out = argv[2:], ["run", os.environ["STANDIN_MODEL"]]
    k = 0
    while k < len(rest):
        if rest[k] == "--model-type":
            k += 2
            continue
        out.append("--onnxrt" if rest[k] == "--trt" else rest[k])
        k += 1
    return out


if __name__ == "__main__":
    sys.argv = ["polygraphy"] + rewrite(sys.argv[1:])
    sys.exit(main())
