"""`clipsteer world train-clip`: contrastive training of the toy CLIP on the pretraining stream.

Recipe (from the feasibility prototype's measurements): AdamW (0.9, 0.98), lr 2e-3 with linear warm-up
and one cosine decay, weight decay 0.1 on matrices, grad-clip 1, optional bf16 autocast, logit scale ≤ 100.
Captions repeat within a batch ("a photo of a star"), so the loss treats identical captions as shared
positives (a multi-positive InfoNCE) instead of as negatives of each other.
Resumable: `out/state.pt` holds model + optimiser + step; the data stream is a pure function of the step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import CLIPModel

from clipsteer.world.configs import TrainClipConfig
from clipsteer.world.distribution import pretraining_scene
from clipsteer.world.factors import SHAPES
from clipsteer.world.fingerprint import world_fingerprint
from clipsteer.world.generate import render_indices
from clipsteer.world.stream import batch_loader
from clipsteer.world.toy_clip import (
    export_toy_clip,
    preprocess_for,
    tokenize,
    toy_clip_config,
    world_tokenizer,
)
from clipsteer.world.version import WORLD_VERSION

STATE_FILE = "state.pt"
PROBE_SEED = 777_001



def progress_at(step: int, elapsed_s: float, config: TrainClipConfig) -> float:
    """Fraction of the schedule done, in [0, 1] (by steps, or by wall time under a time budget)."""
    by_steps = step / config.steps
    return min(1.0, max(by_steps, elapsed_s / config.time_budget_s) if config.time_budget_s > 0 else by_steps)


def lr_at(step: int, progress: float, config: TrainClipConfig) -> float:
    """Linear warm-up over `warmup` steps, then cosine from lr to 0 over the rest of the schedule."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    warm = config.warmup / config.steps
    after = (progress - warm) / max(1e-9, 1.0 - warm)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, after))))


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, input_ids: torch.Tensor,
                     logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over [B, D] L2-normalised embeddings; identical captions are shared positives."""
    assert image_emb.shape == text_emb.shape and image_emb.shape[0] == input_ids.shape[0]
    logits = logit_scale.exp() * image_emb.float() @ text_emb.float().T  # [B, B]
    same = (input_ids[:, None, :] == input_ids[None, :, :]).all(-1).float()  # [B, B], symmetric, diag 1
    targets = same / same.sum(1, keepdim=True)
    loss_i2t = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t2i = -(targets * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (loss_i2t + loss_t2i) / 2


def param_groups(model: CLIPModel, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_embedding = "embedding" in name or name == "logit_scale"
        (decay if p.ndim >= 2 and not is_embedding else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Probe:
    """Zero-shot 'a photo of a {shape}' accuracy on clean object images and on text-only images."""

    def __init__(self, config: TrainClipConfig) -> None:
        clean = dataclasses.replace(config.world, p_text=0.0, p_text_only=0.0)
        words = dataclasses.replace(config.world, p_text_only=1.0)
        n = config.probe_images
        self.preprocess = preprocess_for(config.world)
        a = render_indices(lambda i: pretraining_scene(PROBE_SEED, i, clean), range(n), clean)
        b = render_indices(lambda i: pretraining_scene(PROBE_SEED + 1, i, words), range(n), words)
        self.sets = {"clean": (a.images, a.labels["shape"]), "read": (b.images, b.labels["word"])}
        self.prompts = tokenize(world_tokenizer(), [f"a photo of a {s}" for s in SHAPES])

    @torch.no_grad()
    def __call__(self, model: CLIPModel) -> dict[str, float]:
        model.eval()
        head = F.normalize(model.get_text_features(input_ids=self.prompts).pooler_output, dim=-1)
        result = {}
        for name, (images, target) in self.sets.items():
            emb = model.get_image_features(pixel_values=self.preprocess(images)).pooler_output
            pred = (F.normalize(emb, dim=-1) @ head.T).argmax(1).numpy()
            result[name] = float((pred == target).mean())
        model.train()
        return result


# Fields that do not change the trajectory; everything else must match to resume. The time budget may be
# extended on resume (the cosine then follows the new budget from where it is).
_NOT_IN_KEY = ("out", "threads", "workers", "checkpoint_every", "probe_every", "probe_images", "log_every",
               "resume", "stop_after", "time_budget_s")


def _config_key(config: TrainClipConfig) -> str:
    d = dataclasses.asdict(config)
    for k in _NOT_IN_KEY:
        d.pop(k)
    return json.dumps(d, sort_keys=True, default=str)


class Run:
    """One invocation of train-clip: model + optimiser + step/time bookkeeping, state file, log."""

    def __init__(self, config: TrainClipConfig) -> None:
        self.config = config
        config.out.mkdir(parents=True, exist_ok=True)
        self.state_path = config.out / STATE_FILE
        self.log_file = (config.out / "train.log").open("a")
        torch.manual_seed(config.seed)
        self.model = CLIPModel(toy_clip_config(config.world, config.arch))
        self.opt = torch.optim.AdamW(param_groups(self.model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98),
                                     eps=1e-6)
        self.start, self.before_s, self.t0 = 0, 0.0, time.time()
        if config.resume and self.state_path.is_file():
            self._restore()

    def _restore(self) -> None:
        state = torch.load(self.state_path, weights_only=True)  # tensors, numbers and strings only: no unpickling
        if state["config"] != _config_key(self.config):
            raise ValueError(f"{self.state_path} was written by a different training config; use another --out "
                             f"or --no-resume to start over")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.start, self.before_s = state["step"], state["elapsed_s"]
        self.log({"resumed_at": self.start})

    def elapsed(self) -> float:
        return self.before_s + time.time() - self.t0

    def log(self, row: dict) -> None:
        print(json.dumps(row), file=self.log_file, flush=True)

    def save(self, step: int) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": step,
                    "elapsed_s": self.elapsed(), "config": _config_key(self.config)}, tmp)
        tmp.replace(self.state_path)

    def step(self, images: torch.Tensor, input_ids: torch.Tensor, lr: float, preprocess) -> float:
        """One optimiser step on images uint8 [B, S, S, 3] and input_ids int64 [B, L]; returns the loss."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        pixels = preprocess(images)  # float32 [B, 3, S, S]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
            out = self.model(input_ids=input_ids, pixel_values=pixels)
        loss = contrastive_loss(out.image_embeds, out.text_embeds, input_ids, self.model.logit_scale)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} (lr {lr})")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.opt.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(max=math.log(100.0))
        return loss.item()

    def export(self, steps_done: int, last_loss: float | None) -> Path:
        final = self.config.out / "final"
        info = {"world_version": WORLD_VERSION, "fingerprint": world_fingerprint(self.config.world),
                "training": json.loads(json.dumps(dataclasses.asdict(self.config), default=str)),
                "trained_steps": steps_done, "images_seen": steps_done * self.config.batch_size,
                "final_loss": last_loss, "train_seconds": round(self.elapsed(), 1)}
        export_toy_clip(final, self.model.eval(), self.config.world, info)
        self.log({"exported": str(final)})
        return final


def train_clip(config: TrainClipConfig) -> Path:
    """Train (or resume) and export the HF checkpoint to config.out/final; returns that folder
    (or the run folder when `stop_after` ended the invocation early; nothing is exported then)."""
    torch.set_num_threads(config.threads)
    run = Run(config)
    run.model.train()
    preprocess = preprocess_for(config.world)
    probe = Probe(config) if config.probe_every else None
    loader = batch_loader(config.world, config.seed, config.batch_size, run.start, config.steps, config.workers)
    seen, window, last_loss, probed_at = 0, [], None, -1
    done = run.start
    bar = tqdm(loader, total=config.steps, initial=run.start, desc="train-clip", unit="step", dynamic_ncols=True)
    for step, (images, input_ids) in enumerate(bar, start=run.start):
        progress = progress_at(step, run.elapsed(), config)
        if progress >= 1.0:  # the time budget is spent
            break
        lr = lr_at(step, progress, config)
        last_loss = run.step(images, input_ids, lr, preprocess)
        done, seen = step + 1, seen + len(images)
        window.append(last_loss)
        rate = seen / (time.time() - run.t0)
        bar.set_postfix(loss=f"{np.mean(window):.3f}", img_s=f"{rate:.0f}")
        if done % config.log_every == 0 or done == config.steps:
            run.log({"step": done, "loss": round(float(np.mean(window)), 4), "lr": lr, "progress": round(progress, 4),
                     "img_s": round(rate, 1), "scale": round(run.model.logit_scale.exp().item(), 2),
                     "elapsed_s": round(run.elapsed(), 1)})
            window.clear()
        if probe is not None and (done % config.probe_every == 0 or done == config.steps):
            run.log({"step": done, "probe": probe(run.model)})
            probed_at = done
        if done % config.checkpoint_every == 0 or done == config.steps:
            run.save(done)
        if config.stop_after and done - run.start >= config.stop_after and done < config.steps:
            run.save(done)
            run.log({"stopped_at": done})
            return config.out
    bar.close()
    run.save(done)
    if probe is not None and probed_at != done:
        run.log({"step": done, "probe": probe(run.model)})
    return run.export(done, last_loss)
