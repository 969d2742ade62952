"""CLIP backbones: loading, preprocessing, hook sites, capture, interventions, zero-shot heads.

Names are imported lazily so that light modules (sites, token selections) can be used without
loading torch and transformers.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Backbone": "clipsteer.models.backbone",
    "ImageReadError": "clipsteer.data.protocol",
    "Preprocess": "clipsteer.models.preprocess",
    "Site": "clipsteer.models.sites",
    "TokenSelection": "clipsteer.models.sites",
    "UnknownSiteError": "clipsteer.models.sites",
    "parse_site": "clipsteer.models.sites",
    "resolve_model": "clipsteer.models.loading",
    "select_tokens": "clipsteer.models.sites",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clipsteer.models' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
