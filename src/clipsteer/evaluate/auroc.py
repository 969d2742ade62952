"""Vectorised AUROC of many detectors (columns) against one binary label."""

from __future__ import annotations

import torch
from torch import Tensor


def rank_columns(scores: Tensor) -> Tensor:
    """Ranks (1-based, ties averaged) of each column of scores [N, F], as float64 [N, F]."""
    n = scores.shape[0]
    order = scores.argsort(dim=0, stable=True)
    sorted_scores = scores.gather(0, order)
    # Tie groups: average rank = (first + last position of the group) / 2 + 1.
    new_group = torch.ones_like(sorted_scores, dtype=torch.bool)
    new_group[1:] = sorted_scores[1:] != sorted_scores[:-1]
    group_id = new_group.long().cumsum(dim=0) - 1  # [N, F]
    positions = torch.arange(n, device=scores.device, dtype=torch.float64)[:, None].expand_as(sorted_scores)
    first = torch.full_like(positions, float("inf")).scatter_reduce(0, group_id, positions, "amin", include_self=True)
    last = torch.full_like(positions, -1.0).scatter_reduce(0, group_id, positions, "amax", include_self=True)
    sorted_ranks = (first.gather(0, group_id) + last.gather(0, group_id)) / 2 + 1
    return torch.empty_like(sorted_ranks).scatter_(0, order, sorted_ranks)


def auroc(scores: Tensor, labels: Tensor, chunk: int = 256) -> Tensor:
    """AUROC of each column of scores [N, F] for binary labels [N] → [F] (0.5 = chance, ties count half).

    Columns are ranked `chunk` at a time to bound memory (N × chunk float64).

    Mann–Whitney: AUROC = (Σ ranks of positives − n₊(n₊+1)/2) / (n₊·n₋).
    """
    if scores.ndim == 1:
        scores = scores[:, None]
    labels = labels.bool().to(scores.device)
    if labels.shape != scores.shape[:1]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match scores {tuple(scores.shape)}")
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes; got {n_pos} positives and {n_neg} negatives")
    pos_rank_sum = torch.cat([rank_columns(scores[:, i:i + chunk].double())[labels].sum(dim=0)
                              for i in range(0, scores.shape[1], chunk)])
    return ((pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()
