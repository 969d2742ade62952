"""Buffers a training loop reuses every step instead of allocating them afresh.

On CPU a fresh tensor the size of a batch's codes ([N, d_sae], e.g. 32 MiB at 4096×2048 fp32) is larger than
glibc's largest heap block, so every allocation is a new mmap whose pages fault in on first write: measured
~40 ms on one thread, 5× the cost of a pass over an existing buffer (benchmarks/relu_step_fused.py). The
updater owns one `Workspace`; the ReLU node (`clipsteer.sae.fused_relu`) and the sparse TopK encoder
(`clipsteer.sae.sparse`) write their [N, d_sae] intermediates into it. Only fp32 without autocast uses it.

A buffer can also change hands: the updater gives back last step's W_enc gradient (Adam is done with it)
under `W_ENC_GRAD`, and the sparse TopK encoder takes it to write this step's gradient into, so a
[d_in, d_sae] gradient is not a fresh, page-faulting allocation every step (autograd keeps a returned
gradient as `.grad` without copying it when nothing else references it).
"""

from __future__ import annotations

import torch
from torch import Tensor

W_ENC_GRAD = "W_enc.grad"  # name of the W_enc gradient buffer handed between the updater and the TopK encoder


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

    def give(self, name: str, tensor: Tensor | None) -> None:
        """Hand `tensor` over for reuse under `name`; the caller must not use it afterwards."""
        if tensor is None:
            self._buffers.pop(name, None)
        else:
            self._buffers[name] = tensor

    def take(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A buffer the caller keeps (the workspace forgets it): the one given under `name` if it fits, else new."""
        buffer = self._buffers.pop(name, None)
        if buffer is None or buffer.shape != shape or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buffer


def plain_fp32(x: Tensor, weight: Tensor) -> bool:
    """fp32 operands and no autocast: the fused ReLU node and buffer reuse apply (bf16 autocast keeps the generic ops)."""
    return (x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled(x.device.type))
