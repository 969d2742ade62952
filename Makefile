# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
# torch==2.13.0 is named in the same pip command so that pip takes the local CPU build
# instead of resolving a multi-GB CUDA wheel for `torch>=2.2`.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
# No wheel cache: a CI machine's disk can be nearly full, and the cache would double what the installs write.
export PIP_NO_CACHE_DIR := 1
# Tests run in their own venv with the `interop` extra (SAELens) and open_clip, so that the round
# trips with the real libraries run in CI. open_clip needs torchvision, and the torchvision wheel that
# resolves beside the CPU torch is a CUDA build whose C++ ops fail to load: `import torchvision`, and
# with it `import transformers` (which uses torchvision when it can see one), fail with "operator
# torchvision::nms does not exist", and transformers' image processors change behaviour. So open_clip,
# timm and torchvision go --no-deps into a side folder that only tests/interop puts on sys.path (and
# fixes up there); the rest of the suite, its subprocesses and the demo venv never see torchvision.
TEST_VENV ?= .venv-test
TEST_PY := $(TEST_VENV)/bin/python
OPEN_CLIP_SITE := $(TEST_VENV)/open-clip-site
OPEN_CLIP_PACKAGES := open-clip-torch==3.3.0 timm==1.0.31 torchvision==0.28.0

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" -e ".[dev]"
	touch $@

$(TEST_VENV)/.installed: pyproject.toml
	@df -Pk . | awk 'NR == 2 && $$4 < 3 * 1048576 { printf "warning: %.1f GB free on this disk; the test environment needs about 2.5 GB (.venv-test 2.1 GB, chromium 0.4 GB)\n", $$4 / 1048576 }' >&2
	python3 -m venv $(TEST_VENV)
	$(TEST_PY) -m pip install -q --upgrade pip
	$(TEST_PY) -m pip install -q "$(TORCH)" -e ".[dev,interop]"
	$(TEST_PY) -m pip install -q --no-deps --target $(OPEN_CLIP_SITE) $(OPEN_CLIP_PACKAGES)
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/clipsteer demo

# The report's browser test needs Chromium: installed here when missing (Debian/apt, ~1 min, 113 MB).
test: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/ruff check src tests benchmarks
	bash scripts/ensure_chromium.sh
	CLIPSTEER_OPEN_CLIP_SITE=$(abspath $(OPEN_CLIP_SITE)) $(TEST_PY) -m pytest -p no:cacheprovider

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks

.PHONY: install demo test lint
