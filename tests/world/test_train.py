"""Toy-CLIP training: the loss, the schedule, a tiny end-to-end run whose loss falls, resume, export."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from clipsteer.world.configs import ToyClipArch, TrainClipConfig
from clipsteer.world.toy_clip import tokenize, world_tokenizer
from clipsteer.world.train import contrastive_loss, lr_at, progress_at, train_clip

TINY_ARCH = ToyClipArch(vision_width=32, vision_layers=1, text_width=32, text_layers=1, heads=2, mlp_ratio=2,
                        projection_dim=16)


def tiny_config(tmp_path, **overrides) -> TrainClipConfig:
    base = dict(out=tmp_path / "run", steps=40, batch_size=32, lr=3e-3, warmup=4, threads=1, workers=0,
                bf16=False, checkpoint_every=1000, probe_every=0, log_every=10, arch=TINY_ARCH)
    return TrainClipConfig(**(base | overrides))


def test_contrastive_loss_rewards_alignment_and_shares_identical_captions():
    torch.manual_seed(0)
    ids = tokenize(world_tokenizer(), ["a star", "a moon", "a star", "a cross"])
    emb = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    scale = torch.tensor(4.0)
    assert contrastive_loss(emb, emb, ids, scale) < contrastive_loss(emb, emb[[1, 2, 3, 0]], ids, scale)
    # images 0 and 2 share a caption, so they are interchangeable positives: swapping them changes nothing
    images = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    assert torch.allclose(contrastive_loss(images[[2, 1, 0, 3]], emb, ids, scale),
                          contrastive_loss(images, emb, ids, scale))
    # ... while swapping two images with different captions does change it
    assert not torch.allclose(contrastive_loss(images[[1, 0, 2, 3]], emb, ids, scale),
                              contrastive_loss(images, emb, ids, scale))


def test_schedule_warms_up_then_decays_to_zero():
    cfg = TrainClipConfig(steps=100, warmup=10, lr=1.0)
    assert lr_at(0, progress_at(0, 0, cfg), cfg) == pytest.approx(0.1)
    assert lr_at(10, progress_at(10, 0, cfg), cfg) == pytest.approx(1.0)
    assert lr_at(99, progress_at(99, 0, cfg), cfg) < 0.01
    timed = dataclasses.replace(cfg, time_budget_s=60.0)
    assert progress_at(20, 30.0, timed) == pytest.approx(0.5)


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "train.log").read_text().splitlines() if line.startswith("{")]
    return [r["loss"] for r in rows if "loss" in r]


def test_tiny_world_tiny_model_loss_falls_and_exports(tmp_path):
    cfg = tiny_config(tmp_path)
    final = train_clip(cfg)
    losses = _losses(cfg.out)
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.15, losses
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "world.json"):
        assert (final / name).is_file(), name
    info = json.loads((final / "world.json").read_text())
    assert info["trained_steps"] == 40 and info["world_version"] and info["fingerprint"]


def test_resume_continues_the_same_run(tmp_path):
    straight = train_clip(tiny_config(tmp_path / "a", steps=12))
    cfg = tiny_config(tmp_path / "b", steps=12, stop_after=5)
    assert train_clip(cfg) == cfg.out and not (cfg.out / "final").exists()
    resumed = train_clip(dataclasses.replace(cfg, stop_after=0))
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    with pytest.raises(ValueError, match="different training config"):
        train_clip(dataclasses.replace(cfg, lr=1e-3))
