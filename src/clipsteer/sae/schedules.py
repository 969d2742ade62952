"""Schedules as pure functions of the step, so a resumed run needs no scheduler state.

- Learning rate (the paper's "cosineannealingwarmup"): linear warm-up from lr/warmup to lr over
  `warmup` steps, then cosine decay from lr to lr·end_factor (the paper: lr/10) at the last step.
- Loss coefficients (e.g. the L1 λ): linear warm-up from 0 to the target over `warmup` steps.
"""

from __future__ import annotations

import math


def cosine_with_warmup(step: int, *, base: float, warmup: int, total: int, end_factor: float = 0.1) -> float:
    """Learning rate at 0-based `step` of a `total`-step run."""
    if step < 0 or total <= 0:
        raise ValueError(f"cosine_with_warmup: step={step}, total={total}; expected step >= 0 and total > 0")
    if step < warmup:
        return base * (step + 1) / warmup
    decay_steps = max(1, total - warmup - 1)
    progress = min(1.0, (step - warmup) / decay_steps)
    end = base * end_factor
    return end + 0.5 * (base - end) * (1.0 + math.cos(math.pi * progress))


def linear_warmup(step: int, *, target: float, warmup: int) -> float:
    """Coefficient at 0-based `step`: target·min(1, (step + 1)/warmup); `target` when warmup is 0."""
    if warmup <= 0:
        return target
    return target * min(1.0, (step + 1) / warmup)
