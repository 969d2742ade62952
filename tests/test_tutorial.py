"""docs/tutorial.md runs as written: every ```bash and ```python block, in order, at toy sizes.

Only the tutorial's settings block (the first bash block) is replaced, by the same variables pointing at
a random-weight CLIP of ViT-B/32's shape (12 blocks, 224 px, 32 px patches; narrower) written here, an
image folder with a `labels.csv`, and tiny sizes. Every other block runs verbatim: bash blocks with
`bash -euo pipefail` in one working directory, their exported variables carried from block to block as in
one terminal; python blocks in one shared namespace, with those variables in `os.environ`. `clipsteer` on
PATH runs `clipsteer.cli.main()` (the console entry point) of the checkout under test, with this
interpreter, in the dev venv and in `make test`'s venv alike. Then the files the tutorial says it writes
are checked, and the objects its Python blocks made.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipsteer.models.testing import tiny_backbone

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SETTINGS_MARK = "settings: the only block to edit"
CLASSES = ("cat", "dog")  # words the random model's tokenizer knows (clipsteer.models.testing.TINY_WORDS)
SPURIOUS = {"red": (200, 40, 40), "blue": (40, 40, 200)}
PER_GROUP = {"train": 4, "val": 3, "test": 3}
D_MODEL = 32
LOGIT_SCALE = math.exp(2.6592)  # CLIPConfig's initial logit scale: the random model's τ


def blocks() -> list[tuple[str, str]]:
    return [(kind, body) for kind, body in BLOCK.findall(TUTORIAL.read_text())]


def write_labelled_images(root: Path) -> Path:
    """A labels.csv folder: a dark or bright square (label cat/dog) on a red or blue background (spurious)."""
    rng = np.random.default_rng(0)
    rows = ["file,label,spurious,split"]
    for split, n in PER_GROUP.items():
        (root / split).mkdir(parents=True)
        for label in CLASSES:
            for spurious, colour in SPURIOUS.items():
                for i in range(n):
                    arr = np.clip(np.array(colour) + rng.integers(-30, 31, (40, 48, 3)), 0, 255).astype(np.uint8)
                    y, x = rng.integers(0, 24, 2)
                    arr[y:y + 16, x:x + 16] = 230 if label == "cat" else 20
                    name = f"{split}/{label}_{spurious}_{i}.png"
                    Image.fromarray(arr).save(root / name)
                    rows.append(f"{name},{label},{spurious},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_settings_block_is_first_and_sets_every_variable() -> None:
    kinds = [kind for kind, _ in blocks()]
    assert kinds[0] == "bash" and SETTINGS_MARK in blocks()[0][1]
    assert sum(SETTINGS_MARK in body for _, body in blocks()) == 1
    names = set(re.findall(r"^export (\w+)=", blocks()[0][1], re.MULTILINE))
    used = {shell or python for _, body in blocks()[1:]
            for shell, python in re.findall(r"\$\{?(\w+)|environ\[\"(\w+)\"\]", body)}
    assert used - names == {"SAE"}, "blocks use variables the settings block does not set"


def test_tutorial_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tiny_backbone(seed=0, n_layers=12, d_model=D_MODEL, image_size=224, patch_size=32) \
        .save_pretrained(tmp_path / "clip")
    images = write_labelled_images(tmp_path / "images")
    n_images = 4 * sum(PER_GROUP.values())
    settings = {
        "CLIP": model_dir, "IMAGES": images, "LABELLED": f"csv:{images}", "CLASSES": " ".join(CLASSES),
        "SITE": "blocks.10.resid_post", "DEVICE": "cpu", "RUN": "runs/tutorial",
        "HARVEST_IMAGES": n_images, "TRAIN_TOKENS": 8192, "EVAL_IMAGES": n_images, "STEER_IMAGES": 4,
        "STEER_FEATURES": 8, "CARDS": 4,
    }
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    source_path = os.pathsep.join(p for p in sys.path if p != os.environ.get("CLIPSTEER_OPEN_CLIP_SITE"))
    # One thread per process: at these sizes, and on shared cores, OpenMP threads mostly wait for each other.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": source_path,
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    namespace: dict = {"__name__": "tutorial"}
    monkeypatch.chdir(work)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clipsteer_on_path(bin_dir)
        run_blocks(settings, env, work, monkeypatch, namespace)
    finally:
        torch.set_num_threads(threads)
    check_outputs(work / "runs" / "tutorial", n_images, namespace)


def clipsteer_on_path(bin_dir: Path) -> None:
    """`clipsteer` = the console entry point of the checkout under test, run by this interpreter."""
    shim = bin_dir / "clipsteer"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "from clipsteer.cli import main; main()" "$@"\n')
    shim.chmod(0o755)


def run_blocks(settings: dict, env: dict[str, str], work: Path, monkeypatch: pytest.MonkeyPatch,
               namespace: dict) -> None:
    env_file = work.parent / "env"
    for number, (kind, body) in enumerate(blocks()):
        start = time.perf_counter()
        if SETTINGS_MARK in body:
            body = "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in settings.items())
        if kind == "bash":
            # One terminal: each block starts with the environment the previous one ended with.
            script = f"{body}\nenv -0 > {shlex.quote(str(env_file))}\n"
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, \
                f"block {number} failed:\n{body}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            env = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
        else:
            for key in ("CLIP", "IMAGES", "CLASSES", "DEVICE", "RUN", "SAE"):
                monkeypatch.setenv(key, env[key])
            exec(compile(body, f"{TUTORIAL}:block{number}", "exec"), namespace)
        print(f"[tutorial] block {number} ({kind}, {body.splitlines()[0][:60]}): {time.perf_counter() - start:.1f} s")


def check_outputs(run: Path, n_images: int, ns: dict) -> None:
    from clipsteer.evaluate.results import EvalResult
    from clipsteer.experiments.suppression import SuppressionResult
    from clipsteer.steer.results import SteerabilitySummary, read_feature_rows

    store = run / "activations" / "blocks.10.resid_post"
    meta = json.loads((store / "metadata.json").read_text())
    assert meta["n_images"] == n_images and meta["n_rows"] == n_images * 50  # CLS + 7×7 patches

    sae_dir = run / "train" / "saes" / "topk_x16_k32"
    assert (sae_dir / "sae.safetensors").is_file() and (run / "train" / "metrics.jsonl").is_file()
    quality = EvalResult.read(sae_dir)
    r = quality.reconstruction
    assert quality.n_images == n_images and -1 < r.explained_variance <= 1 and 0 <= r.dead_fraction <= 1
    assert r.l0_patches == pytest.approx(32) and r.l0_cls == pytest.approx(32)  # TopK, k = 32
    assert quality.downstream is not None and quality.downstream.kl_zero_shot >= 0

    summary = SteerabilitySummary.read(run / "steerability")
    assert set(summary.bases) == {"sae", "null", "neurons", "neurons_ln"}
    assert summary.alpha == pytest.approx(150 * math.sqrt(D_MODEL - 1) / math.sqrt(767))  # the paper's α by meaning
    assert summary.temperature == pytest.approx(LOGIT_SCALE, rel=1e-4)  # τ = the model's own logit scale
    assert summary.bases["sae"].n_features == 8 and summary.bases["neurons"].n_features == D_MODEL
    for basis, scores in summary.bases.items():
        assert 0 <= scores.fraction_steerable <= 1
        rows = read_feature_rows(run / "steerability", basis)
        assert all(math.isfinite(row.steerability) and row.steerability >= 0 for row in rows)
        assert all(-1 <= row.power <= 1 for row in rows)

    debias = SuppressionResult.read(run / "debias")
    for method in [debias.baseline, *debias.layers[0].methods.values(), *debias.references.values()]:
        assert 0 <= method.report.wga <= method.report.avg <= 1  # type: ignore[union-attr]

    index = run / "report" / "index.html"
    assert index.is_file() and "Debiasing: debias" in index.read_text()
    assert len(json.loads((index.parent / "cards.json").read_text())) == 4

    # The Python section's objects.
    assert ns["codes"].shape == (8, 50, 16 * D_MODEL) and int((ns["codes"] > 0).sum(-1).max()) <= 32
    top = ns["top"]
    assert len(top) == 5 and [v for _, v in top] == sorted((v for _, v in top), reverse=True)
    assert top[0][1] >= float(ns["codes"][..., ns["feature"]].max()) * (1 - 1e-4)  # the 8 images are among them
    for probs in (ns["clean"], ns["steered"], ns["debiased"]):
        assert probs.shape == (5, 2) and np.allclose(probs.sum(-1).numpy(), 1, atol=1e-5)
    assert tuple(ns["chosen"].features) == tuple(debias.layer(debias.best_site).methods["sae"].features)
