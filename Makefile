# scrubber: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo

TRAIN_STAMP := $(VENV)/.installed-train
# torch for training and the optional EasyOCR engine (the classifier and RapidOCR run on ONNX
# Runtime). These exact pins resolve from the local wheel store on the project's machines; an
# unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup train-setup train diagnose-classifier evaluate-corpus demo validate test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "error: scrubber needs Python 3.11 or newer; install it or run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,server,node]'
	touch $(STAMP)

## setup: create .venv and install scrubber with its development tools
setup: $(STAMP)

$(TRAIN_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e '.[dev,server,node,train,easyocr,ray]'
	touch $(TRAIN_STAMP)

## train-setup: add torch, the training extras, the EasyOCR engine and Ray to .venv (to retrain; CI)
train-setup: $(TRAIN_STAMP)

## train: reproduce the shipped classifier in models/: 2.0.0 from scratch, 2.1.0 continued on a second split, 2.2.0 continued with small frames (about 4 h on 2 cores)
train: $(TRAIN_STAMP)
	$(BIN)/python -m training.train --out training/cache/model-2.0.0
	$(BIN)/python -m training.train --out training/cache/model-2.1.0 --init-from training/cache/model-2.0.0 --extra-splits 1 --epochs 9 --lr 1e-3
	$(BIN)/python -m training.train --out models --init-from training/cache/model-2.1.0 --extra-splits 1 --small 10000 --epochs 3 --lr 5e-4
	$(BIN)/python -m training.evaluate_corpus --model-dir models --write

## diagnose-classifier: where the shipped classifier loses recall (fit, generalisation, text size)
diagnose-classifier: $(TRAIN_STAMP)
	$(BIN)/python -m training.diagnose --model-dir models

## evaluate-corpus: score every frame of ../shared/corpus with the shipped classifier
evaluate-corpus: $(STAMP)
	$(BIN)/python -m training.evaluate_corpus --model-dir models

## demo: set up, generate synthetic sample DICOMs, de-identify them, classify their frames, scrub them with the batch job, show the result
demo: $(STAMP)
	rm -rf $(DEMO)/input $(DEMO)/output
	$(BIN)/scrubber samples $(DEMO)/input --patients 3
	$(BIN)/scrubber deid $(DEMO)/input $(DEMO)/output --project DEMO \
		--key-file $(DEMO)/private/reid-key.sqlite --report $(DEMO)/report.jsonl
	$(BIN)/scrubber keys info --project DEMO --key-file $(DEMO)/private/reid-key.sqlite
	@echo "--- which frames the burned-in text classifier sends to OCR ---"
	$(BIN)/scrubber classify $(DEMO)/input
	@echo "--- the batch job: classify, OCR, black out, verify, de-identify (resumable) ---"
	rm -rf $(DEMO)/scrubbed $(DEMO)/scrubbed.quarantine $(DEMO)/scrubbed.ledger.sqlite*
	$(BIN)/scrubber run $(DEMO)/input --out $(DEMO)/scrubbed --project DEMO \
		--key-file $(DEMO)/private/reid-key.sqlite --report $(DEMO)/scrub-report.jsonl
	@echo "--- one original header (fake patient) ---"
	$(BIN)/scrubber header $(DEMO)/input/patient01/series1/IM0001.dcm --keyword-filter Patient,Study,Accession,Institution,UID
	@echo "--- the same instance, de-identified ---"
	$(BIN)/scrubber header $(DEMO)/output/patient01/series1/IM0001.dcm --keyword-filter Patient,Study,Accession,Institution,UID,Deidentification

VALIDATION := validation
N ?= 200
## validate: build a synthetic validation set (N instances, fake patients, answer key), scrub it with the batch job, score the result
validate: $(STAMP)
	rm -rf $(VALIDATION)
	$(BIN)/scrubber synth $(VALIDATION) --n $(N)
	$(BIN)/scrubber run $(VALIDATION)/input --out $(VALIDATION)/deid --project VALID \
		--key-file $(VALIDATION)/private/reid-key.sqlite --report $(VALIDATION)/run-report.jsonl || [ $$? -eq 1 ]
	$(BIN)/scrubber keys export --project VALID --key-file $(VALIDATION)/private/reid-key.sqlite \
		--kind uid --out $(VALIDATION)/uid_map.csv
	$(BIN)/scrubber keys export --project VALID --key-file $(VALIDATION)/private/reid-key.sqlite \
		--kind patient_id --out $(VALIDATION)/patid_map.csv
	$(BIN)/scrubber evaluate $(VALIDATION)/deid --answer-key $(VALIDATION)/answer_key.sqlite \
		--uid-map $(VALIDATION)/uid_map.csv --patid-map $(VALIDATION)/patid_map.csv

## test: lint, type-check and run the whole test suite (installs torch too: training is tested)
test: $(TRAIN_STAMP) lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## bench: `scrubber deid` next to a plain pydicom read and write; frames/s of decode and redaction
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_deid.py
	$(BIN)/python benchmarks/bench_pixels.py
	$(BIN)/python benchmarks/bench_classifier.py --threads 2

clean:
	rm -rf $(VENV) $(DEMO) $(VALIDATION) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
