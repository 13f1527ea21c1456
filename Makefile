# Two commands on a fresh machine (Python 3.11 + make):
#   make demo   create .venv, install itme, run the whole analysis on the built-in demo cohort
#   make test   create .venv, install itme with its test extra, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_output
PIP_FLAGS := --disable-pip-version-check -q -c requirements/constraints.txt

.PHONY: env demo test lint bench clean

$(BIN)/.itme-installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[test]'
	# fcsparser pins numpy<2; only its test files are used, so it is installed without deps
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps fcsparser
	# compile umap-learn's, flowsom's and itme's numba code once, into numba's disk cache
	$(BIN)/itme -q warmup
	touch $@

env: $(BIN)/.itme-installed

demo: env
	$(BIN)/itme demo --out $(OUT)

test: env
	$(BIN)/python -m pytest

lint: env
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
