"""Interventions on dictionary features (SAE features, neurons, directions) inside a Backbone forward.

An `Edit` says which features to change, how, and on which tokens. `edit_fn` turns edits into a
site function for `Backbone.intervene`; `steer` applies edits at one or several sites at once.

Forms:
- "delta" (default): h' = h + dec(f') − dec(f). The SAE's reconstruction error (h − dec(f)) is kept,
  so an edit that changes no code changes nothing — the paper's `include_error=True`.
- "replace": h' = dec(f'), the plain SAE substitution (discards the error term).
- "replace_edited": "replace" on the tokens where the edit changed a code, h unchanged elsewhere — drops the
  error term only where the edited features are (e.g. a written word's patches, which the SAE reconstructs
  worse than other tokens), so tokens the edit does not touch keep their exact activations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from clipsteer.models.backbone import Backbone, SiteFn
from clipsteer.models.sites import TokenSelection, token_slice
from clipsteer.steer.dictionary import LinearDictionary
from clipsteer.steer.edit_kinds import EditOp, Form


@dataclass(frozen=True)
class Edit:
    """Change features `features` with `op`:
    clamp → value; scale → f·value; add → f + value; ablate → 0; mean_ablate → `means[j]`.

    `tokens`: "all", "cls", "patches", or a boolean mask — [T] (every image), [B, T], or a patch mask
    [B, grid, grid] / [grid, grid] (CLS never selected). `only_where_active`: touch a token only where
    the feature is already non-zero.
    """

    features: tuple[int, ...]
    op: EditOp = "clamp"
    value: float = 0.0
    tokens: TokenSelection | Tensor = "all"
    only_where_active: bool = False
    means: Tensor | None = None  # [n_features] feature means, for mean_ablate

    def __post_init__(self) -> None:
        if len(self.features) == 0:
            raise ValueError("an Edit needs at least one feature index")
        if self.op not in ("clamp", "scale", "add", "ablate", "mean_ablate"):
            raise ValueError(f"unknown edit op {self.op!r}; expected clamp, scale, add, ablate or mean_ablate")
        if self.op == "mean_ablate" and self.means is None:
            raise ValueError("mean_ablate needs `means`, the per-feature mean activations")


def token_mask(tokens: TokenSelection | Tensor, batch: int, n_tokens: int, device: torch.device) -> Tensor:
    """Resolve a token selection to a boolean mask [B, T]."""
    if isinstance(tokens, str):
        mask = torch.zeros(n_tokens, dtype=torch.bool, device=device)
        mask[token_slice(tokens)] = True
        return mask.expand(batch, n_tokens)
    mask = tokens.to(device=device, dtype=torch.bool)
    n_patches = n_tokens - 1
    if mask.ndim >= 2 and mask.shape[-1] * mask.shape[-2] == n_patches and mask.shape[-1] ** 2 == n_patches:
        patches = mask.flatten(-2)  # a patch-grid mask [(B,) grid, grid]
        mask = torch.cat([torch.zeros_like(patches[..., :1]), patches], dim=-1)
    if mask.shape[-1] != n_tokens:
        raise ValueError(f"token mask has shape {tuple(tokens.shape)}; expected [{n_tokens}], [B, {n_tokens}] "
                         f"or a patch grid mask [B, g, g] with g² = {n_patches}")
    return mask.expand(batch, n_tokens) if mask.ndim == 1 else mask


def edited_values(f: Tensor, edit: Edit, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The features an edit touches and their new codes: (idx [k], new codes [B, T, k]).

    f [B, T, F] are the current codes; mask [B, T] selects tokens. Untouched tokens keep their codes.
    """
    idx = torch.as_tensor(edit.features, device=f.device)
    if int(idx.max()) >= f.shape[-1] or int(idx.min()) < 0:
        raise ValueError(f"feature index out of range: {list(edit.features)} for a dictionary of {f.shape[-1]} features")
    old = f[..., idx]
    if edit.op == "clamp":
        new = torch.full_like(old, edit.value)
    elif edit.op == "scale":
        new = old * edit.value
    elif edit.op == "add":
        new = old + edit.value
    elif edit.op == "ablate":
        new = torch.zeros_like(old)
    else:
        new = edit.means.to(old)[idx].expand_as(old)  # type: ignore[union-attr]
    where = mask[..., None].expand_as(old)
    if edit.only_where_active:
        where = where & (old != 0)
    return idx, torch.where(where, new, old)


def apply_edit(f: Tensor, edit: Edit, mask: Tensor) -> Tensor:
    """Codes f [B, T, F] → edited codes (a new tensor)."""
    idx, new = edited_values(f, edit, mask)
    out = f.clone()
    out[..., idx] = new
    return out


def edit_fn(dictionary: LinearDictionary, edits: Sequence[Edit], form: Form = "delta") -> SiteFn:
    """A site function [B, T, d] → [B, T, d] applying `edits` (in order) through `dictionary`."""
    if form not in ("delta", "replace", "replace_edited"):
        raise ValueError(f"unknown form {form!r}; expected 'delta', 'replace' or 'replace_edited'")

    def fn(h: Tensor) -> Tensor:
        f = dictionary.codes(h)
        masks = [token_mask(edit.tokens, h.shape[0], h.shape[1], h.device) for edit in edits]
        if form != "delta":
            edited = f
            for edit, mask in zip(edits, masks, strict=True):
                edited = apply_edit(edited, edit, mask)
            replaced = dictionary.reconstruct(h, edited).to(h.dtype)
            if form == "replace":
                return replaced
            changed = (edited != f).any(dim=-1, keepdim=True)  # [B, T, 1]
            return torch.where(changed, replaced, h)
        # The delta form needs only the edited features' columns: cheap even for a 49k-feature SAE.
        if len(edits) == 1:
            idx, new = edited_values(f, edits[0], masks[0])
        else:  # later edits see earlier ones
            edited = f
            for edit, mask in zip(edits, masks, strict=True):
                edited = apply_edit(edited, edit, mask)
            idx = torch.tensor(list(dict.fromkeys(j for edit in edits for j in edit.features)), device=f.device)
            new = edited[..., idx]
        delta = (new - f[..., idx]) @ dictionary.directions()[idx].to(f)
        return h + (dictionary.scale(h) * delta).to(h.dtype)

    return fn


@contextmanager
def steer(backbone: Backbone, plan: dict[str, tuple[LinearDictionary, Sequence[Edit]]],
          form: Form = "delta") -> Iterator[None]:
    """Apply edits at several sites at once: plan = {site: (dictionary, edits)}."""
    with ExitStack() as stack:
        for site, (dictionary, edits) in plan.items():
            stack.enter_context(backbone.intervene(site, edit_fn(dictionary, edits, form)))
        yield
