"""Held-out EV of the default ReLU recipe at initialisation and after each of the first steps, with the
benchmark's constant lr (no warm-up, as peers.py runs every library) and with the default 200-step warm-up.

    PYTHONPATH=src python benchmarks/first_step_ev.py /tmp/i15b/d768/acts/blocks.2.resid_post
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from peers import evaluate, load_rows  # noqa: E402

from clipsteer.sae import ObjectiveConfig, SAEConfig, SAERecipe, TensorSource, Trainer, TrainerConfig  # noqa: E402
from clipsteer.sae.schedules import cosine_with_warmup  # noqa: E402

torch.set_num_threads(1)
train, held = load_rows(sys.argv[1], 100, 4096 * 6)


class L:
    """The `reconstruct` that peers.evaluate needs, over an updater's SAE."""

    def __init__(self, u):  # type: ignore[no-untyped-def]
        self.sae = u.sae

    @torch.no_grad()
    def reconstruct(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.sae.eval()
        c = self.sae.encode(v)
        r = self.sae.decode(c, x=v)
        self.sae.train()
        return r, (c > 0).sum(-1), (c > 0).any(0)


for warm in (0, 200):
    cfg = TrainerConfig(tokens_per_batch=4096, lr=4e-4, lr_warmup_steps=warm, progress=False, total_tokens=4096 * 1000)
    sae = SAEConfig(d_in=train.shape[1], d_sae=train.shape[1] * 16)
    tr = Trainer([SAERecipe("b", sae, ObjectiveConfig())], TensorSource(train[:16384]), cfg)
    (u,) = tr._build_updaters()
    tr._initialise([u])
    print("warmup", warm, "init", evaluate(L(u), held, u.sae.d_sae), flush=True)
    xs = train.split(4096)
    for i in range(3):
        lr = cosine_with_warmup(i, base=cfg.lr, warmup=cfg.lr_warmup_steps, total=1000, end_factor=cfg.lr_end_factor)
        u.step(xs[i], i, lr)
        print("warmup", warm, "step", i + 1, f"lr {lr:.2e}", evaluate(L(u), held, u.sae.d_sae), flush=True)
