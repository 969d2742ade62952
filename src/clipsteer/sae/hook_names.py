"""Translate TransformerLens/Prisma hook names into clipsteer site names, and back.

`blocks.{l}.hook_resid_post` → `blocks.{l}.resid_post` (likewise resid_pre, attn_out, mlp_out). Other
hook names (e.g. `blocks.3.ln2.hook_normalized`) have no clipsteer site; they are kept verbatim so the
provenance is not lost, and a loader warns at load time (`UnknownSiteWarning`) instead of letting the
SAE fail later, at use.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from clipsteer.models.sites import SITE_PATTERN


class UnknownSiteWarning(UserWarning):
    """An SAE was trained at a hook that is not a clipsteer site: it loads, but cannot be applied to a Backbone."""


def site_from_hook_name(hook_name: str | None) -> str | None:
    if hook_name is None:
        return None
    match = SITE_PATTERN.match(hook_name.strip())
    if match is None:
        return hook_name
    return f"blocks.{match.group(1)}.{match.group(2)}"


def site_from_foreign_hook(hook_name: str | None, where: str | Path) -> str | None:
    """`site_from_hook_name`, warning (naming `where`) when the hook has no clipsteer site."""
    site = site_from_hook_name(hook_name)
    if site is not None and SITE_PATTERN.match(site) is None:
        warnings.warn(f"{where}: hook {hook_name!r} is not a clipsteer site (blocks.<layer>.resid_pre|attn_out|"
                      "mlp_out|resid_post); the SAE loads, but harvesting, evaluation and steering at that hook "
                      "will refuse it", UnknownSiteWarning, stacklevel=3)
    return site


def hook_name_from_site(site: str) -> str:
    """`blocks.{l}.resid_post` → `blocks.{l}.hook_resid_post` (the TransformerLens / Prisma / SAELens name)."""
    match = SITE_PATTERN.match(site.strip())
    if match is None:
        raise ValueError(f"site {site!r} has no TransformerLens hook name; expected 'blocks.<layer>.<kind>'")
    return f"blocks.{match.group(1)}.hook_{match.group(2)}"
