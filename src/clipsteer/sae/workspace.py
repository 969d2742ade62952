"""Buffers a training loop reuses every step instead of allocating them afresh.

On CPU a fresh tensor the size of a batch's codes ([N, d_sae], e.g. 32 MiB at 4096×2048 fp32) is larger than
glibc's largest heap block, so every allocation is a new mmap whose pages fault in on first write: measured
~40 ms on one thread, 5× the cost of a pass over an existing buffer (benchmarks/relu_step_fused.py). The
updater owns one `Workspace`; the ReLU node (`clipsteer.sae.fused_relu`) and the sparse TopK encoder
(`clipsteer.sae.sparse`) write their [N, d_sae] intermediates into it. Only fp32 without autocast uses it.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Workspace:
    """Reusable [N, d_sae] buffers for a training loop. A trace made with a workspace returns codes that live
    in it: the next trace with the same workspace overwrites them (the updater drops each trace first)."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = torch.empty(shape, dtype=like.dtype, device=like.device)
            self._buffers[name] = buffer
        return buffer


def plain_fp32(x: Tensor, weight: Tensor) -> bool:
    """fp32 operands and no autocast: the fused ReLU node and buffer reuse apply (bf16 autocast keeps the generic ops)."""
    return (x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled(x.device.type))
