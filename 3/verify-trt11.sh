#!/usr/bin/env bash
# precdoctor: check the fp16 plan (2 node(s) in FP32) on TensorRT 11.1+ (trtexec), target trt-strong.
# Run from this folder: bash verify-trt11.sh. Exit status: 0 every checked criterion holds on every sample, 1 one fails,
# 2 the tool could not build or run (not a verdict).
# TF32: on in the FP32 islands (the default); the plan was verified so.
# References: reference/ (FP32 outputs of 1 sample(s), reference/manifest.json).
# Builds the mixed ONNX with trtexec (TensorRT 11.1+: --loadRefOutputs and --accuracy* are new in 11.1), then
# checks each sample with trtexec's own accuracy check (mapping.py: finite and max-abs -> l0, rel-l2 -> l2,
# cosine -> cos), and fails on a NaN in the exported outputs, which every trtexec algorithm passes.
# NOT checked here (precdoctor checked them when it verified the plan):
#   "finite-inside"
set -u
cd -- "$(dirname -- "$0")" || exit 2
mkdir -p verify-trt11 || exit 2
status=0

check() {  # check LOG WHAT COMMAND...: 0 passed; 1 the trtexec accuracy check failed (named); a run that failed otherwise ends the script (2)
  local log=$1 what=$2
  shift 2
  if "$@" > "$log" 2>&1; then echo "pass  $what"; return 0; fi
  if grep -q -e 'Accuracy validation FAILED' "$log"; then echo "FAIL  $what (see $log)"; status=1; return 1; fi
  echo "ERROR could not run: $what (see $log)" >&2
  exit 2
}

check verify-trt11/build.log build \
    trtexec \
    --onnx=model.mixed.onnx \
    --saveEngine=verify-trt11/model.plan \
    --skipInference

no_nan() {  # no_nan FILE WHAT: trtexec's exported outputs hold no NaN (its accuracy check passes NaN)
  if grep -e '"values"' "$1" | grep -q -E -e '(^|[][ ,])-?nan([][ ,]|$)'; then echo "FAIL  $2: NaN in the outputs ($1)"; status=1; fi
}

check verify-trt11/s0.0.log 'sample 0: finite on 1 output(s) (l0)' \
    trtexec \
    --loadEngine=verify-trt11/model.plan \
    --loadInputs=x:reference/s0.in0.bin \
    --loadRefOutputs=logits:reference/s0.out0.bin \
    --accuracyAlgorithm=l0 \
    --atol=3.40282347e+38 \
    --rtol=1 \
    --accuracyThreshold=1e-12 \
    --exportOutput=verify-trt11/s0.outputs.json \
    --iterations=1 \
    --warmUp=0 \
    --duration=0
no_nan verify-trt11/s0.outputs.json 'sample 0'
check verify-trt11/s0.1.log 'sample 0: rel-l2<=0.05 on 1 output(s) (l2)' \
    trtexec \
    --loadEngine=verify-trt11/model.plan \
    --loadInputs=x:reference/s0.in0.bin \
    --loadRefOutputs=logits:reference/s0.out0.bin \
    --accuracyAlgorithm=l2 \
    --accuracyThreshold=0.00458385004 \
    --iterations=1 \
    --warmUp=0 \
    --duration=0
if [ "$status" -eq 0 ]; then echo "PASSED: every checked criterion holds on every sample"; else echo "FAILED"; fi
exit "$status"
