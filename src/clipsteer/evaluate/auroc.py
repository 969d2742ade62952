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
    """AUROC of each column of scores [N, F] for binary labels [N] → [F], or for several label
    columns [N, K] at once → [K, F] (0.5 = chance, ties count half).

    Mann–Whitney: AUROC = (Σ ranks of positives − n₊(n₊+1)/2) / (n₊·n₋). Ranks do not depend on the
    labels, so each column is ranked once and every label set is a matrix product with the ranks.
    Columns are ranked `chunk` at a time to bound memory (N × chunk float64).
    """
    if scores.ndim == 1:
        scores = scores[:, None]
    single = labels.ndim == 1
    labels = (labels[:, None] if single else labels).to(scores.device)
    if labels.shape[0] != scores.shape[0]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match scores {tuple(scores.shape)}")
    positives = labels.bool().double()  # [N, K]
    n_pos = positives.sum(dim=0)  # [K]
    n_neg = labels.shape[0] - n_pos
    if bool(((n_pos == 0) | (n_neg == 0)).any()):
        raise ValueError(f"AUROC needs both classes; positives per label set: {n_pos.long().tolist()} "
                         f"of {labels.shape[0]}")
    pos_rank_sum = torch.cat([positives.T @ rank_columns(scores[:, i:i + chunk].double())
                              for i in range(0, scores.shape[1], chunk)], dim=1)  # [K, F]
    result = ((pos_rank_sum - (n_pos * (n_pos + 1) / 2)[:, None]) / (n_pos * n_neg)[:, None]).float()
    return result[0] if single else result
