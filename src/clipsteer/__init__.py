"""clipsteer: sparse autoencoders on CLIP's vision transformer, steerability, and feature suppression."""

__version__ = "0.1.0"
