"""`clipsteer world evaluate`: the toy CLIP's zero-shot accuracy, spurious-correlation gaps and
typographic attack on held-out world splits, through the project's `Backbone` (same path as real CLIP).

Zero-shot prompts are `templates` over class names (default "a photo of a {}"). Group tasks predict
among the task's shapes and score the predicted shape's group; the typographic task is 8-way.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from clipsteer.atomic import atomic_write_json
from clipsteer.evaluate.groups import GroupReport, accuracy, group_report, typographic_report
from clipsteer.evaluate.zero_shot import ZeroShotClassifier
from clipsteer.models.backbone import Backbone
from clipsteer.models.loading import resolve_checkpoint_dir
from clipsteer.world.configs import WorldEvalConfig
from clipsteer.world.dataset import WorldDataset
from clipsteer.world.evalsets import GROUP_TASKS, group_names, groups_of
from clipsteer.world.factors import SHAPES
from clipsteer.world.toy_clip import read_world_info, world_config_of


class ShapeClassifier:
    """The world's 8-way shape classifier, run over whole world datasets in batches."""

    def __init__(self, backbone: Backbone, templates: tuple[str, ...], images_per_batch: int) -> None:
        self.classifier = ZeroShotClassifier(backbone, SHAPES, templates)
        self.images_per_batch = images_per_batch

    def logits(self, ds: WorldDataset) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(logits float [N, 8] over SHAPES, labels) for a whole dataset."""
        out, labels = [], []
        backbone = self.classifier.backbone
        for start in range(0, len(ds), self.images_per_batch):
            batch = ds.arrays(start, min(len(ds), start + self.images_per_batch))
            out.append(self.classifier.logits(backbone.pixels(batch.images), self.images_per_batch).numpy())
            labels.append(batch.labels)
        merged = {k: np.concatenate([lab[k] for lab in labels]) for k in labels[0]}
        return np.concatenate(out), merged


def _group_task(zs: ShapeClassifier, task: str, ds: WorldDataset) -> GroupReport:
    logits, labels = zs.logits(ds)
    label_shapes = GROUP_TASKS[task][0]
    candidates = [SHAPES.index(s) for s in label_shapes[0] + label_shapes[1]]
    pred_shape = np.array(candidates)[logits[:, candidates].argmax(1)]
    pred_label = np.isin(np.array(SHAPES)[pred_shape], label_shapes[1]).astype(int)
    label, group = groups_of(task, labels)
    return group_report(pred_label == label, group, group_names(task))


def evaluate_checkpoint(config: WorldEvalConfig) -> dict:
    torch.set_num_threads(config.threads)
    folder = resolve_checkpoint_dir(config.checkpoint)
    world = world_config_of(folder)
    info = read_world_info(folder)
    backbone = Backbone.from_pretrained(config.checkpoint)
    zs = ShapeClassifier(backbone, config.templates, config.images_per_batch)

    def ds(task: str, n: int, variant: str = "images") -> WorldDataset:
        return WorldDataset(task=task, split=config.split, variant=variant, n=n, world=world)

    logits, labels = zs.logits(ds("zero_shot", config.n_zero_shot))
    pred = logits.argmax(1)
    per_class = {s: accuracy(pred[labels["shape"] == k], labels["shape"][labels["shape"] == k])
                 for k, s in enumerate(SHAPES) if (labels["shape"] == k).any()}
    logits_bal, labels_bal = zs.logits(ds("zero_shot_balanced", config.n_zero_shot))
    typo = {v: zs.logits(ds("typographic", config.n_typographic, v)) for v in ("clean", "attacked", "blank")}
    attacked_labels = typo["attacked"][1]
    return {
        "checkpoint": config.checkpoint,
        "split": config.split,
        "world_version": info.get("world_version"),
        "trained_steps": info.get("trained_steps"),
        "zero_shot_accuracy": accuracy(pred, labels["shape"]),
        "zero_shot_per_class": per_class,
        "zero_shot_balanced_accuracy": accuracy(logits_bal.argmax(1), labels_bal["shape"]),
        "background_task": _group_task(zs, "background", ds("background", config.n_group)).to_json(),
        "attribute_task": _group_task(zs, "attribute", ds("attribute", config.n_group)).to_json(),
        "typographic": typographic_report(
            typo["clean"][0].argmax(1), typo["attacked"][0].argmax(1), target=attacked_labels["shape"],
            written=attacked_labels["word"], blank_pred=typo["blank"][0].argmax(1)).to_json(),
        "sizes": {"zero_shot": config.n_zero_shot, "group_tasks": config.n_group, "typographic": config.n_typographic},
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


def evaluate_world(config: WorldEvalConfig) -> dict:
    result = evaluate_checkpoint(config)
    text = json.dumps(result, indent=2)
    if config.out is not None:
        atomic_write_json(config.out, result)
    print(text if config.json else _summary(result))
    return result
