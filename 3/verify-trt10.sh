#!/usr/bin/env bash
# precdoctor: check the fp16 plan (2 node(s) in FP32) on TensorRT 8.6-10.x (trtexec to build, Polygraphy to check), target trt-strong.
# Run from this folder: bash verify-trt10.sh. Exit status: 0 every checked criterion holds on every sample, 1 one fails,
# 2 the tool could not build or run (not a verdict).
# TF32: on in the FP32 islands (the default); the plan was verified so.
# References: reference/ (FP32 outputs of 1 sample(s), reference/manifest.json).
# Builds the plan with trtexec's flags (TensorRT 8.6-10.x: --fp16 --precisionConstraints=obey --layerPrecisions
# --layerOutputTypes, as trtexec.txt), then checks each sample with Polygraphy against the FP32 outputs
# (--load-outputs; its elementwise check fails NaN itself). Needs Polygraphy 0.53+ (pip install polygraphy):
# older ones take one --compare function and no --l2-threshold (the script then stops with status 2).
# NOT checked here (precdoctor checked them when it verified the plan):
#   "finite-inside"
set -u
cd -- "$(dirname -- "$0")" || exit 2
mkdir -p verify-trt10 || exit 2
status=0

check() {  # check LOG WHAT COMMAND...: 0 passed; 1 the Polygraphy comparison check failed (named); a run that failed otherwise ends the script (2)
  local log=$1 what=$2
  shift 2
  if "$@" > "$log" 2>&1; then echo "pass  $what"; return 0; fi
  if grep -q -e 'Mismatched outputs' "$log"; then echo "FAIL  $what (see $log)"; status=1; return 1; fi
  echo "ERROR could not run: $what (see $log)" >&2
  exit 2
}

check verify-trt10/build.log build \
    trtexec \
    --onnx=../../../../tmp/tmpy0tycok1/eps_underflow.onnx \
    --fp16 \
    --precisionConstraints=obey \
    --layerPrecisions=frontend/Clip:fp32,frontend/Log:fp32 \
    --layerOutputTypes=frontend/Clip:fp32,frontend/Log:fp32 \
    --saveEngine=verify-trt10/model.plan \
    --skipInference
check verify-trt10/s0.log 'sample 0' \
    polygraphy \
    run \
    verify-trt10/model.plan \
    --model-type \
    engine \
    --trt \
    --load-inputs \
    reference/s0.inputs.json \
    --load-outputs \
    reference/s0.outputs.json \
    --compare \
    simple \
    l2 \
    --check-error-stat \
    elemwise \
    --infinities-compare-equal \
    --atol \
    1e+300 \
    --rtol \
    1e+300 \
    --l2-threshold \
    1e+300 \
    logits:1.8762720614800061
if [ "$status" -eq 0 ]; then echo "PASSED: every checked criterion holds on every sample"; else echo "FAILED"; fi
exit "$status"
