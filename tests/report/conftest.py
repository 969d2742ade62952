"""A small run on a random-weight CLIP folder and an image folder (no world, no toy CLIP), and its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsteer.activations.configs import HarvestConfig
from clipsteer.activations.harvest import harvest
from clipsteer.evaluate.commands import evaluate_sae
from clipsteer.evaluate.configs import EvalConfig
from clipsteer.evaluate.groups import GroupReport
from clipsteer.experiments.suppression import Candidate, LayerResult, MethodResult, SuppressionResult
from clipsteer.report.commands import ReportConfig, report
from clipsteer.sae.commands import train
from clipsteer.sae.configs import TrainConfig
from clipsteer.sae.recipe import TrainerConfig
from clipsteer.steer.commands import steerability
from clipsteer.steer.configs import SteerabilityConfig

SITE = "blocks.1.resid_post"


def write_image_folder(root: Path, n: int, seed: int = 0) -> Path:
    """n coloured images of different sizes: a bright square on a noisy background, at varying places."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = 64 + 8 * (i % 3), 64 + 4 * (i % 4)
        arr = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
        y, x = rng.integers(0, h - 24), rng.integers(0, w - 24)
        arr[y:y + 24, x:x + 24] = rng.integers(120, 256, 3, dtype=np.uint8)
        (root / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / f"class{i % 2}" / f"img_{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def random_clip_run(world_geometry_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """harvest → train (TopK, 128 features) → eval → steerability on 24 folder images, plus a debias result."""
    root = tmp_path_factory.mktemp("report_run")
    images = write_image_folder(root / "images", 24)
    run = root / "run"
    model = str(world_geometry_model_dir)
    stores = harvest(HarvestConfig(sites=(SITE,), out=run / "activations", model=model, dataset=str(images),
                                   images_per_batch=8, workers=0))
    saes = train(TrainConfig(store=stores[SITE], out=run / "train", architecture="topk", expansion_factor=4, k=8,
                             trainer=TrainerConfig(tokens_per_batch=256, total_tokens=12_800, lr=1e-3, init_samples=512,
                                                   log_every=10, progress=False)))
    sae_dir = saes["topk_x4_k8"]
    evaluate_sae(EvalConfig(sae=sae_dir, out=run / "eval", model=model, dataset=str(images),
                            downstream_dataset=None, n_images=24, n_patch_images=8, images_per_batch=8))
    steerability(SteerabilityConfig(out=run / "steerability", sae=sae_dir, model=model, images=str(images),
                                    n_images=4, max_features=12, alpha=20.0, temperature=10.0,
                                    curve_features=(3,), curve_alphas=(0.0, 10.0, 20.0)))
    # A suppression result as `debias` writes it: the report shows it and links its features' cards.
    def groups(x: float, y: float) -> GroupReport:
        return GroupReport({"a/x": x, "a/y": y}, {"a/x": 10, "a/y": 10})

    def method(name: str, k: int, features: tuple[int, ...], x: float, y: float) -> MethodResult:
        return MethodResult(name, k, "all", features, groups(x, y), groups(x, y))

    layers = tuple(LayerResult(f"blocks.{n}.resid_post", "sae", {"sae": method("sae", 2, (5, 77), 0.88, wga),
                                                                 "random": method("random", 2, (1, 2), 0.9, 0.52)},
                               (Candidate(0, "all", 0.5, 0.7),))
                   for n, wga in ((0, 0.6), (1, 0.7)))
    SuppressionResult("debias", "waterbirds:x", "wga", "accuracy", method("zero_shot", 0, (), 0.9, 0.5), {},
                      layers, SITE).write(run / "debias" / "background")
    return run


@pytest.fixture(scope="session")
def random_clip_report(random_clip_run: Path) -> Path:
    return report(ReportConfig(run=random_clip_run, cards_per_sae=10, top_images=4, thumbnail_size=64,
                               tokens_per_batch=300, progress=False))
