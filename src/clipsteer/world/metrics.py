"""Pure metric functions over predictions (numpy), shared by `world evaluate` and the experiments."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    assert pred.shape == target.shape and pred.ndim == 1 and len(pred) > 0, (pred.shape, target.shape)
    return float((pred == target).mean())


def group_report(correct: np.ndarray, group: np.ndarray, names: Sequence[str]) -> dict:
    """{'wga', 'avg', 'groups': {name: acc}}; avg is the mean over groups (each group weighs the same)."""
    assert correct.shape == group.shape and correct.ndim == 1
    accs = {}
    for g, name in enumerate(names):
        in_group = group == g
        if not in_group.any():
            raise ValueError(f"group {name!r} has no examples; a group-balanced set needs every group")
        accs[name] = float(correct[in_group].mean())
    values = list(accs.values())
    return {"wga": min(values), "avg": float(np.mean(values)), "groups": accs}


def typographic_report(clean_pred: np.ndarray, attacked_pred: np.ndarray, blank_pred: np.ndarray,
                       target: np.ndarray, written: np.ndarray) -> dict:
    """Accuracies of the three variants, and how often the prediction is the written (wrong) word."""
    assert (written != target).all(), "typographic attacks must write a wrong class word"
    return {
        "clean_accuracy": accuracy(clean_pred, target),
        "attacked_accuracy": accuracy(attacked_pred, target),
        "text_capture_rate": accuracy(attacked_pred, written),
        "blank_accuracy": accuracy(blank_pred, target),
        "blank_capture_rate": accuracy(blank_pred, written),
    }
