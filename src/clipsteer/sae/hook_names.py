"""Translate TransformerLens/Prisma hook names into clipsteer site names.

`blocks.{l}.hook_resid_post` → `blocks.{l}.resid_post` (likewise resid_pre, attn_out, mlp_out). Other
hook names (e.g. `blocks.3.ln2.hook_normalized`) have no clipsteer site; they are kept verbatim so the
provenance is not lost, and steering code will reject them by name.
"""

from __future__ import annotations

from clipsteer.models.sites import SITE_PATTERN


def site_from_hook_name(hook_name: str | None) -> str | None:
    if hook_name is None:
        return None
    match = SITE_PATTERN.match(hook_name.strip())
    if match is None:
        return hook_name
    return f"blocks.{match.group(1)}.{match.group(2)}"
