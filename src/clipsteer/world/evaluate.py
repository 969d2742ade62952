"""`clipsteer world evaluate`: the toy CLIP's zero-shot accuracy, spurious-correlation gaps and
typographic attack on held-out world splits, through the project's `Backbone` (same path as real CLIP).

Zero-shot prompts are `templates` over class names (default "a photo of a {}"). Group tasks predict
among the task's shapes and score the predicted shape's group; the typographic task is 8-way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipsteer.models.backbone import Backbone
from clipsteer.world.dataset import WorldDataset
from clipsteer.world.evalsets import GROUP_TASKS, group_names, groups_of
from clipsteer.world.factors import SHAPES
from clipsteer.world.metrics import accuracy, group_report, typographic_report
from clipsteer.world.paths import SHIPPED_CHECKPOINT
from clipsteer.world.toy_clip import read_world_info, world_config_of


@dataclass(frozen=True)
class EvaluateConfig:
    checkpoint: Path = SHIPPED_CHECKPOINT
    """A toy-CLIP folder (with world.json); defaults to the checkpoint shipped with the package."""
    split: str = "test"
    json: bool = False
    """Print one JSON object instead of a readable summary."""
    n_zero_shot: int = 2000
    n_group: int = 2000
    """Images per group task (n/4 per group)."""
    n_typographic: int = 1000
    """Image triples (clean, attacked, blank)."""
    templates: tuple[str, ...] = ("a photo of a {}",)
    batch_size: int = 500
    threads: int = 2
    out: Path | None = None
    """Also write the JSON here."""


class ZeroShot:
    """Encodes world images in batches and classifies them against a class-name head."""

    def __init__(self, backbone: Backbone, templates: tuple[str, ...], batch_size: int) -> None:
        self.backbone, self.batch_size = backbone, batch_size
        self.head = backbone.zero_shot_head(list(SHAPES), templates)  # [8, D]

    @torch.no_grad()
    def logits(self, ds: WorldDataset) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(logits float [N, 8] over SHAPES, labels) for a whole dataset."""
        out, labels = [], []
        for start in range(0, len(ds), self.batch_size):
            batch = ds.arrays(start, min(len(ds), start + self.batch_size))
            emb = self.backbone.encode_image(self.backbone.pixels(batch.images))
            out.append(self.backbone.zero_shot_logits(emb, self.head).float().numpy())
            labels.append(batch.labels)
        merged = {k: np.concatenate([lab[k] for lab in labels]) for k in labels[0]}
        return np.concatenate(out), merged


def _group_task(zs: ZeroShot, task: str, ds: WorldDataset) -> dict:
    logits, labels = zs.logits(ds)
    label_shapes = GROUP_TASKS[task][0]
    candidates = [SHAPES.index(s) for s in label_shapes[0] + label_shapes[1]]
    pred_shape = np.array(candidates)[logits[:, candidates].argmax(1)]
    pred_label = np.isin(np.array(SHAPES)[pred_shape], label_shapes[1]).astype(int)
    label, group = groups_of(task, labels)
    return group_report(pred_label == label, group, group_names(task))


def evaluate_checkpoint(cfg: EvaluateConfig) -> dict:
    torch.set_num_threads(cfg.threads)
    folder = Path(cfg.checkpoint)
    world = world_config_of(folder)
    info = read_world_info(folder)
    backbone = Backbone.from_pretrained(folder)
    zs = ZeroShot(backbone, cfg.templates, cfg.batch_size)

    def ds(task: str, n: int, variant: str = "images") -> WorldDataset:
        return WorldDataset(task=task, split=cfg.split, variant=variant, n=n, world=world)

    logits, labels = zs.logits(ds("zero_shot", cfg.n_zero_shot))
    pred = logits.argmax(1)
    per_class = {s: accuracy(pred[labels["shape"] == k], labels["shape"][labels["shape"] == k])
                 for k, s in enumerate(SHAPES) if (labels["shape"] == k).any()}
    logits_bal, labels_bal = zs.logits(ds("zero_shot_balanced", cfg.n_zero_shot))
    typo = {v: zs.logits(ds("typographic", cfg.n_typographic, v)) for v in ("clean", "attacked", "blank")}
    attacked_labels = typo["attacked"][1]
    return {
        "checkpoint": str(folder),
        "split": cfg.split,
        "world_version": info.get("world_version"),
        "trained_steps": info.get("trained_steps"),
        "zero_shot_accuracy": accuracy(pred, labels["shape"]),
        "zero_shot_per_class": per_class,
        "zero_shot_balanced_accuracy": accuracy(logits_bal.argmax(1), labels_bal["shape"]),
        "background_task": _group_task(zs, "background", ds("background", cfg.n_group)),
        "attribute_task": _group_task(zs, "attribute", ds("attribute", cfg.n_group)),
        "typographic": typographic_report(
            typo["clean"][0].argmax(1), typo["attacked"][0].argmax(1), typo["blank"][0].argmax(1),
            target=attacked_labels["shape"], written=attacked_labels["word"]),
        "sizes": {"zero_shot": cfg.n_zero_shot, "group_tasks": cfg.n_group, "typographic": cfg.n_typographic},
    }


def _summary(r: dict) -> str:
    lines = [f"{r['checkpoint']} ({r['split']} split, world {r['world_version']})",
             f"zero-shot accuracy {r['zero_shot_accuracy']:.3f} (balanced factors {r['zero_shot_balanced_accuracy']:.3f})"]
    for task in ("background_task", "attribute_task"):
        t = r[task]
        groups = ", ".join(f"{k} {v:.3f}" for k, v in t["groups"].items())
        lines.append(f"{task}: avg {t['avg']:.3f}  wga {t['wga']:.3f}  gap {t['avg'] - t['wga']:.3f}  [{groups}]")
    lines.append("typographic: " + ", ".join(f"{k} {v:.3f}" for k, v in r["typographic"].items()))
    return "\n".join(lines)


def evaluate_world(cfg: EvaluateConfig) -> dict:
    result = evaluate_checkpoint(cfg)
    text = json.dumps(result, indent=2)
    if cfg.out is not None:
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        cfg.out.write_text(text + "\n")
    print(text if cfg.json else _summary(result))
    return result
