"""Hook sites: where in the vision transformer activations are read and edited.

A site is `blocks.{layer}.{kind}` with kind one of:
- `resid_pre`  — the residual stream entering block `layer` (block 0: after the pre-layernorm),
- `attn_out`   — the attention branch's output (before it is added to the residual),
- `mlp_out`    — the MLP branch's output (before it is added to the residual),
- `resid_post` — the residual stream leaving block `layer` (= HF `hidden_states[layer + 1]`).
So `resid_post = resid_pre + attn_out + mlp_out` within one block.
ViT-Prisma / TransformerLens spellings (`blocks.8.hook_resid_post`) are accepted and normalised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from clipsteer.errors import ConfigError

SiteKind = Literal["resid_pre", "attn_out", "mlp_out", "resid_post"]
SITE_KINDS: tuple[SiteKind, ...] = ("resid_pre", "attn_out", "mlp_out", "resid_post")
SITE_PATTERN = re.compile(r"^blocks\.(\d+)\.(?:hook_)?(resid_pre|attn_out|mlp_out|resid_post)$")


class UnknownSiteError(ConfigError):
    """A site name that does not exist in this model."""


@dataclass(frozen=True, order=True)
class Site:
    layer: int
    kind: SiteKind

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.{self.kind}"

    @property
    def depth(self) -> float:
        """Position in the forward order, so the deepest of several sites is the last one computed."""
        return self.layer + SITE_KINDS.index(self.kind) / len(SITE_KINDS)

    def __str__(self) -> str:
        return self.name


def parse_site(site: str | Site, n_layers: int) -> Site:
    """Parse and validate a site name against a model with `n_layers` blocks."""
    if isinstance(site, Site):
        parsed = site
    else:
        match = SITE_PATTERN.match(site.strip())
        if match is None:
            raise UnknownSiteError(
                f"unknown site {site!r}: expected 'blocks.<layer>.<kind>' with kind in {list(SITE_KINDS)} "
                f"and layer in 0..{n_layers - 1}, e.g. 'blocks.{n_layers // 2}.resid_post'"
            )
        parsed = Site(int(match.group(1)), match.group(2))  # type: ignore[arg-type]
    if not 0 <= parsed.layer < n_layers:
        raise UnknownSiteError(
            f"unknown site {parsed.name!r}: this model has {n_layers} blocks, so layer must be in "
            f"0..{n_layers - 1}; valid sites: blocks.0.resid_pre ... blocks.{n_layers - 1}.resid_post "
            f"(kinds {list(SITE_KINDS)})"
        )
    return parsed


TokenSelection = Literal["all", "cls", "patches"]
"""Which tokens of an image: all (CLS + patches), the CLS token (index 0) only, or the patches only."""
TOKEN_SELECTIONS: tuple[TokenSelection, ...] = get_args(TokenSelection)


def check_tokens(tokens: str, where: str = "tokens") -> TokenSelection:
    """Validate a token-selection name; the error names `where` (a flag or field) and the choices."""
    if tokens not in TOKEN_SELECTIONS:
        raise ValueError(f"{where}={tokens!r}: expected one of {list(TOKEN_SELECTIONS)}")
    return tokens  # type: ignore[return-value]


def token_slice(tokens: TokenSelection) -> slice:
    """The token positions a selection covers: all → [0, T), cls → [0, 1), patches → [1, T)."""
    return {"all": slice(None), "cls": slice(0, 1), "patches": slice(1, None)}[check_tokens(tokens)]


def select_tokens(x, tokens: TokenSelection):
    """[B, T, d] → [B, T', d] with T' = T (all), 1 (cls) or T − 1 (patches); a view, no copy."""
    return x[:, token_slice(tokens)]
