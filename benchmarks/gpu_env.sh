#!/usr/bin/env bash
# Source this on a GPU machine that cannot reach a package index (the device tool's H200): installs the wheels
# carried in .whl/ into /tmp/site, registers clipsteer's `world` dataset entry point without installing
# clipsteer (a minimal dist-info beside the wheels; the code itself comes from src/ on PYTHONPATH), and stubs
# `nnsight`, which dictionary_learning's package __init__ imports for its activation buffer and which peers.py
# never uses. Fetch the wheels first, here (pure-Python, for the device's Python 3.12):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform any -d .whl \
#       tyro docstring-parser shtab typeguard eai-sparsify==1.3.3 dictionary-learning==0.1.0 overcomplete==0.3.0 \
#       datasets dill multiprocess natsort schedulefree simple-parsing
#   source benchmarks/gpu_env.sh
site=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || return 1
info="$site/clipsteer-0.1.0.dist-info"
mkdir -p "$info"
printf 'Metadata-Version: 2.1\nName: clipsteer\nVersion: 0.1.0\n' >"$info/METADATA"
printf '[clipsteer.datasets]\nworld = clipsteer.world.dataset:open_world_dataset\n' >"$info/entry_points.txt"
python3 -c "import nnsight" 2>/dev/null || { mkdir -p "$site/nnsight"
    echo "LanguageModel = None  # stub: see benchmarks/gpu_env.sh" >"$site/nnsight/__init__.py"; }
export PYTHONPATH="src:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
