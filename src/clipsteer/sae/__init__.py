"""Sparse autoencoders: architectures, objectives, trainer, checkpoints, foreign formats (Prisma, SAELens).

    from clipsteer.sae import load_any_sae
    sae = load_any_sae("runs/sae/saes/relu_l1=0.0001")
    codes = sae.encode(h)                  # h [B, T, d_in] → [B, T, d_sae]
    h_hat = sae.decode(codes, x=h)         # x is needed by per-token (layer-norm) SAEs
"""

from clipsteer.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "SAEConfig": "clipsteer.sae.config",
    "SAEConfigError": "clipsteer.sae.config",
    "SAEFormatError": "clipsteer.sae.io",
    "load_sae": "clipsteer.sae.io",
    "save_sae": "clipsteer.sae.io",
    "load_any_sae": "clipsteer.sae.loading",
    "SAEInputError": "clipsteer.sae.model",
    "SAEOutput": "clipsteer.sae.model",
    "SparseAutoencoder": "clipsteer.sae.model",
    "ObjectiveConfig": "clipsteer.sae.recipe",
    "load_prisma_sae": "clipsteer.sae.prisma",
    "SAERecipe": "clipsteer.sae.recipe",
    "TrainerConfig": "clipsteer.sae.recipe",
    "load_saelens_sae": "clipsteer.sae.saelens",
    "BatchSource": "clipsteer.sae.source",
    "TensorSource": "clipsteer.sae.source",
    "Trainer": "clipsteer.sae.trainer",
})
