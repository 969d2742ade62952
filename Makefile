# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
# torch==2.13.0 is named in the same pip command so that pip takes the local CPU build
# instead of resolving a multi-GB CUDA wheel for `torch>=2.2`.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
# Tests run in their own venv with the `interop` extra (SAELens, open_clip), so that the round trips
# with the real libraries run in CI. open_clip pulls torchvision, and the torchvision wheel that
# resolves beside the CPU torch is a CUDA build whose C++ ops fail to load: `import torchvision`, and
# through it `import transformers`, then fail with "operator torchvision::nms does not exist".
# tests/conftest.py registers the two op schemas torchvision checks before anything imports it (the
# ops stay unusable; nothing calls them). The demo venv has no torchvision, so the CLI never needs that.
TEST_VENV ?= .venv-test
TEST_PY := $(TEST_VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" -e ".[dev]"
	touch $@

$(TEST_VENV)/.installed: pyproject.toml
	python3 -m venv $(TEST_VENV)
	$(TEST_PY) -m pip install -q --upgrade pip
	$(TEST_PY) -m pip install -q "$(TORCH)" -e ".[dev,interop]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/clipsteer demo

test: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/ruff check src tests benchmarks
	$(TEST_PY) -m pytest -p no:cacheprovider

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks

.PHONY: install demo test lint
