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

# The report's browser test needs Chromium: installed here when missing (Debian/apt, ~1 min, 113 MB).
test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest -p no:cacheprovider

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks

.PHONY: install demo test lint
