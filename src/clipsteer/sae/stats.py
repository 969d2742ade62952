"""Feature firing statistics over training: dead features (for ghost grads / AuxK) and density windows.

- A feature is *dead* once it has not fired for more than `dead_feature_window` consecutive steps
  (the paper: 5000 steps of 4096 tokens).
- Every `feature_sampling_window` steps the firing frequency of each feature over that window is
  summarised (fraction of dead-in-window and dense features, mean log10 frequency) and reset. For dense
  architectures the frequencies are counted on a fixed sample of each batch's tokens (see
  `TrainTrace.fire_counts`); `window_tokens` is the number of tokens counted.
In data-parallel training `update` sums the firing counts over ranks through the injected `Sync`, so
every rank holds the same statistics (and the same dead-feature mask) as one process on the global batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from clipsteer.sae.distributed import LOCAL, Sync


class FeatureStats:
    def __init__(self, d_sae: int, device: str | torch.device = "cpu") -> None:
        self.steps_since_fired = torch.zeros(d_sae, dtype=torch.int64, device=device)
        self.window_counts = torch.zeros(d_sae, dtype=torch.float64, device=device)
        self.window_tokens = 0

    def update(self, fired: Tensor, fire_counts: Tensor, counted_tokens: int, sync: Sync = LOCAL) -> None:
        """fired: bool [d_sae], non-zero anywhere in the batch; fire_counts [d_sae]: tokens (out of
        `counted_tokens`) on which each feature was non-zero. With `sync`, all three cover every rank's rows."""
        assert fired.shape == fire_counts.shape == self.steps_since_fired.shape, (fired.shape, fire_counts.shape)
        if sync.world > 1:
            ranks_fired = fired.to(torch.float32)
            fire_counts = fire_counts.to(torch.float32, copy=True)
            sync([ranks_fired, fire_counts], "sum")
            fired = ranks_fired > 0
            counted_tokens *= sync.world  # every rank counts the same number of its rows
        self.steps_since_fired = torch.where(fired, torch.zeros_like(self.steps_since_fired),
                                             self.steps_since_fired + 1)
        self.window_counts += fire_counts.to(self.window_counts.dtype)
        self.window_tokens += counted_tokens

    def dead_mask(self, window: int) -> Tensor:
        """bool [d_sae]: features that have not fired for more than `window` steps."""
        return self.steps_since_fired > window

    def summarize_window(self, dense_threshold: float) -> dict[str, float]:
        """Frequencies over the window since the last call, then reset the window."""
        if self.window_tokens == 0:
            return {}
        freq = self.window_counts / self.window_tokens
        summary = {
            "window_frac_never_fired": float((freq == 0).double().mean()),
            "window_frac_dense": float((freq > dense_threshold).double().mean()),
            "window_mean_log10_freq": float(torch.log10(freq.clamp_min(1e-10)).mean()),
            "window_tokens": float(self.window_tokens),
        }
        self.window_counts.zero_()
        self.window_tokens = 0
        assert all(math.isfinite(v) for v in summary.values())
        return summary

    def state_tensors(self) -> dict[str, Tensor]:
        return {"steps_since_fired": self.steps_since_fired, "window_counts": self.window_counts}

    def load_state(self, tensors: dict[str, Tensor], window_tokens: int) -> None:
        for name in ("steps_since_fired", "window_counts"):
            current = getattr(self, name)
            value = tensors[name]
            if value.shape != current.shape or value.dtype != current.dtype:
                raise ValueError(f"checkpoint stats.{name}: shape {tuple(value.shape)} {value.dtype}, expected "
                                 f"{tuple(current.shape)} {current.dtype}")
            setattr(self, name, value.to(current.device).clone())
        self.window_tokens = int(window_tokens)
