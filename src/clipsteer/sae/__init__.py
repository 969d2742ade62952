"""Sparse autoencoders: architectures, objectives, trainer, checkpoints, foreign formats (Prisma, SAELens).

    from clipsteer.sae import load_any_sae
    sae = load_any_sae("runs/sae/saes/relu_l1=0.0001")
    codes = sae.encode(h)                  # h [B, T, d_in] → [B, T, d_sae]
    h_hat = sae.decode(codes, x=h)         # x is needed by per-token (layer-norm) SAEs
"""

from clipsteer.sae.config import SAEConfig, SAEConfigError
from clipsteer.sae.io import SAEFormatError, load_sae, save_sae
from clipsteer.sae.loading import load_any_sae
from clipsteer.sae.model import SAEInputError, SAEOutput, SparseAutoencoder
from clipsteer.sae.objectives import ObjectiveConfig
from clipsteer.sae.prisma import load_prisma_sae
from clipsteer.sae.recipe import SAERecipe, TrainerConfig
from clipsteer.sae.saelens import load_saelens_sae
from clipsteer.sae.source import BatchSource, TensorSource
from clipsteer.sae.trainer import Trainer

__all__ = [
    "BatchSource", "ObjectiveConfig", "SAEConfig", "SAEConfigError", "SAEFormatError", "SAEInputError",
    "SAEOutput", "SAERecipe", "SparseAutoencoder", "TensorSource", "Trainer", "TrainerConfig",
    "load_any_sae", "load_prisma_sae", "load_sae", "load_saelens_sae", "save_sae",
]
