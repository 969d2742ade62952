"""CLIP backbones: loading, preprocessing, hook sites, capture, interventions, zero-shot heads.

Names are imported lazily so that light modules (sites, token selections) can be used without
loading torch and transformers.
"""

from clipsteer.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Backbone": "clipsteer.models.backbone",
    "ImageReadError": "clipsteer.data.protocol",
    "Preprocess": "clipsteer.models.preprocess",
    "Site": "clipsteer.models.sites",
    "TokenSelection": "clipsteer.models.sites",
    "UnknownSiteError": "clipsteer.models.sites",
    "parse_site": "clipsteer.models.sites",
    "resolve_model": "clipsteer.models.loading",
    "select_tokens": "clipsteer.models.sites",
})
