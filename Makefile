# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
# torch==2.13.0 is named in the same pip command so that pip takes the local CPU build
# instead of resolving a multi-GB CUDA wheel for `torch>=2.2`.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/clipsteer demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -p no:cacheprovider

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks

.PHONY: install demo test lint
