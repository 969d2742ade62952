"""CLIP backbones: loading, preprocessing, hook sites, capture, interventions, zero-shot heads."""

from clipsteer.data.protocol import ImageReadError
from clipsteer.models.backbone import Backbone, TokenSelection, select_tokens
from clipsteer.models.preprocess import Preprocess
from clipsteer.models.sites import Site, UnknownSiteError, parse_site

__all__ = ["Backbone", "ImageReadError", "Preprocess", "Site", "TokenSelection", "UnknownSiteError",
           "parse_site", "select_tokens"]
