"""Adapters that drive each peer library's own training step on a tensor stream (see peers.py).

Each adapter builds the peer's model and optimiser with the peer's defaults (Adam at the shared lr,
constant), and exposes `step(x)` (one update, the body of the peer's own training loop) and
`reconstruct(v)` (x̂ from the peer's own encode/decode, nonzero codes per row, fired mask).
"""

from __future__ import annotations

import importlib
import io
import sys
import types
from contextlib import redirect_stdout
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class Setting:
    """What every library trains with."""

    arch: str
    d: int
    width: int
    k: int
    lr: float
    batch: int
    seed: int
    encoder_scale: float | None = None
    """clipsteer TopK only: start from W_enc = c·W_decᵀ with this c instead of the recipe's fit."""
    device: str = "cpu"
    """Where every library's parameters and batches live ("cpu", "cuda")."""
    max_grad_norm: float | None = None
    """clipsteer only: its gradient-norm clip (`TrainerConfig.max_grad_norm`; None: the recipe's, 0: none)."""
    autocast_bf16: bool = False
    """clipsteer only: run its matmuls under bf16 autocast (`TrainerConfig.autocast_bf16`), as sparsify's
    forward always does on a GPU that supports bf16."""
    dead_feature_window: int | None = None
    """clipsteer only: steps without firing before a feature counts as dead for AuxK / ghost grads
    (`TrainerConfig.dead_feature_window`; None: the recipe's default)."""
    adam_beta2: float | None = None
    """clipsteer only: Adam's second-moment decay (`TrainerConfig.adam_betas[1]`; None: the recipe's default)."""
    gradient_rescale: float = 0.0
    """clipsteer only: p, gradients below the clip scaled up by (clip / norm)^p (`TrainerConfig.gradient_rescale`;
    1: every step at the clip's norm)."""
    sparsity_warmup_steps: int | None = None
    """clipsteer only: steps over which λ rises from 0 (`ObjectiveConfig.sparsity_warmup_steps`; None: the
    recipe's)."""
    bias_lr_factor: float = 1.0
    """clipsteer only: b_enc's and b_dec's lr as a multiple of the lr (`TrainerConfig.bias_lr_factor`)."""


class Library:
    """One SAE being trained: `step(x)` applies one update; `reconstruct(v)` → (x̂, nonzero codes per row,
    fired mask [width])."""

    name: str
    driven: str

    def step(self, x: Tensor) -> None:
        raise NotImplementedError

    def reconstruct(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

DEFAULT_LAMBDA = {"saelens": 1.0, "overcomplete": 1.0, "dictionary_learning": 0.1, "saev": 4e-4, "sparsify": 0.0}


def _fired(codes: Tensor) -> tuple[Tensor, Tensor]:
    active = codes > 0
    return active.sum(-1), active.any(0)


class SAELens(Library):
    def __init__(self, s: Setting, lam: float, sample: Tensor) -> None:
        from sae_lens import (
            StandardTrainingSAE,
            StandardTrainingSAEConfig,
            TopKTrainingSAE,
            TopKTrainingSAEConfig,
        )
        from sae_lens.config import LoggingConfig, SAETrainerConfig
        from sae_lens.training.sae_trainer import SAETrainer

        self.name, self.driven = "saelens", "SAETrainer: body of fit() (maybe_reset_sparsity, step)"
        torch.manual_seed(s.seed)
        if s.arch == "topk":
            sae: Any = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=s.d, d_sae=s.width, k=s.k))
        else:
            sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=s.d, d_sae=s.width, l1_coefficient=lam))
        config = SAETrainerConfig(
            n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False, total_training_samples=10**12,
            device=s.device, autocast=False, lr=s.lr, lr_end=s.lr, lr_scheduler_name="constant", lr_warm_up_steps=0,
            adam_beta1=0.9, adam_beta2=0.999, lr_decay_steps=0, n_restart_cycles=1, train_batch_size_samples=s.batch,
            dead_feature_window=1000, feature_sampling_window=2000, logger=LoggingConfig(log_to_wandb=False),
            n_batches_for_norm_estimate=1)
        self.trainer = SAETrainer(config, sae.to(s.device), data_provider=iter(()))
        self.sae = sae

    def step(self, x: Tensor) -> None:
        self.trainer.maybe_reset_sparsity()
        self.trainer.step(x)
        self.trainer.n_training_steps += 1

    @torch.no_grad()
    def reconstruct(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.sae.eval()
        codes = self.sae.encode(v)
        out = self.sae.decode(codes)
        self.sae.train()
        return (out, *_fired(codes))


def _import_overcomplete() -> Any:
    """overcomplete.models imports torchvision at import time; the torchvision wheel beside torch 2.13.0 does
    not import, and overcomplete's SAE code does not use it. A stub stands in during the import only, so that
    other libraries' `find_spec("torchvision")` checks still see no torchvision. Its visualisation module
    also calls `matplotlib.cm.get_cmap`, removed in matplotlib 3.9: the colormap registry's getter stands in."""
    import matplotlib
    import matplotlib.cm
    if not hasattr(matplotlib.cm, "get_cmap"):
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap  # type: ignore[attr-defined]
    stubs = {name: types.ModuleType(name) for name in ("torchvision", "torchvision.transforms")}
    stubs["torchvision"].transforms = stubs["torchvision.transforms"]  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        return importlib.import_module("overcomplete.sae")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class Overcomplete(Library):
    def __init__(self, s: Setting, lam: float, sample: Tensor) -> None:
        sae_module = _import_overcomplete()
        SAE, TopKSAE, train_sae = sae_module.SAE, sae_module.TopKSAE, sae_module.train_sae
        from overcomplete.sae.losses import mse_l1

        self.name, self.driven = "overcomplete", "train_sae(model, [batch], ...) per step"
        torch.manual_seed(s.seed)
        self.train_sae = train_sae
        if s.arch == "topk":
            self.model: Any = TopKSAE(s.d, s.width, top_k=s.k, device=s.device)
            self.criterion = lambda x, x_hat, pre, z, dictionary: (x - x_hat).square().mean()
        else:
            self.model = SAE(s.d, s.width, device=s.device)
            self.criterion = lambda x, x_hat, pre, z, dictionary: mse_l1(x, x_hat, pre, z, dictionary, penalty=lam)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr)
        self.device = s.device

    def step(self, x: Tensor) -> None:
        with redirect_stdout(io.StringIO()):
            self.train_sae(self.model, [x], self.criterion, self.optimizer, nb_epochs=1, device=self.device)

    @torch.no_grad()
    def reconstruct(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.model.eval()
        _, codes, recon = self.model(v)
        self.model.train()
        return (recon, *_fired(codes))


class DictionaryLearning(Library):
    def __init__(self, s: Setting, lam: float, sample: Tensor) -> None:
        from dictionary_learning.trainers.standard import StandardTrainer
        from dictionary_learning.trainers.top_k import TopKTrainer

        self.name, self.driven = "dictionary_learning", "trainer.update(step, x), as trainSAE does"
        common = dict(activation_dim=s.d, dict_size=s.width, layer=0, lm_name="bench", lr=s.lr, seed=s.seed,
                      device=s.device, warmup_steps=0)
        if s.arch == "topk":
            from dictionary_learning.trainers.top_k import AutoEncoderTopK
            self.trainer: Any = TopKTrainer(steps=10**9, k=s.k, dict_class=AutoEncoderTopK, **common)
        else:
            from dictionary_learning.dictionary import AutoEncoder
            self.trainer = StandardTrainer(steps=10**9, dict_class=AutoEncoder, l1_penalty=lam,
                                           sparsity_warmup_steps=None, **common)
        self.n = 0
        if s.arch == "topk":       # its geometric-median b_dec is computed inside step 0: do it here, untimed
            self.step(sample[:s.batch])

    def step(self, x: Tensor) -> None:
        self.trainer.update(self.n, x)
        self.n += 1

    @torch.no_grad()
    def reconstruct(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        recon, codes = self.trainer.ae(v, output_features=True)
        return (recon, *_fired(codes))


class Saev(Library):
    def __init__(self, s: Setting, lam: float, sample: Tensor) -> None:
        from saev import config, nn

        self.name, self.driven = "saev", "loop body of saev.training.train"
        torch.manual_seed(s.seed)
        # b_dec = mean of the shared init sample (its default mean is over 524,288 rows)
        sae_config = config.SparseAutoencoder(d_vit=s.d, exp_factor=s.width // s.d, sparsity_coeff=lam,
                                              n_reinit_samples=len(sample))
        self.sae = nn.SparseAutoencoder(sae_config)
        self.sae.init_b_dec(sample.cpu())  # it compares against a CPU copy of b_dec: initialise, then move
        self.sae.to(s.device)
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=s.lr, fused=True)

    def step(self, x: Tensor) -> None:
        self.sae.normalize_w_dec()
        _, _, loss = self.sae(x)
        loss.loss.backward()
        self.sae.remove_parallel_grads()
        self.optimizer.step()
        self.optimizer.zero_grad()

    @torch.no_grad()
    def reconstruct(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        recon, codes, _ = self.sae(v)
        return (recon, *_fired(codes))


class Sparsify(Library):
    def __init__(self, s: Setting, lam: float, sample: Tensor) -> None:
        from sparsify import SparseCoder, SparseCoderConfig

        self.name, self.driven = "sparsify", "loop body of Trainer.fit (Adam instead of signum)"
        torch.manual_seed(s.seed)
        self.sae = SparseCoder(s.d, SparseCoderConfig(expansion_factor=s.width // s.d, k=s.k), device=s.device)
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=s.lr)
        self.steps_since_fired = torch.zeros(s.width, dtype=torch.long, device=s.device)
        self.dead_after = 10_000_000 // s.batch   # its default dead_feature_threshold, in tokens
        self.auxk_alpha = 1 / 32
        self.first = True

    def step(self, x: Tensor) -> None:
        if self.first:               # its Trainer sets b_dec to the first batch's mean
            with torch.no_grad():
                self.sae.b_dec.copy_(x.mean(0))
            self.first = False
        self.sae.set_decoder_norm_to_unit_norm()
        dead = self.steps_since_fired > self.dead_after
        out = self.sae(x, dead_mask=dead if dead.any() else None)
        (out.fvu + self.auxk_alpha * out.auxk_loss).backward()
        self.sae.remove_gradient_parallel_to_decoder_directions()
        self.optimizer.step()
        self.optimizer.zero_grad()
        with torch.no_grad():
            self.steps_since_fired += 1
            self.steps_since_fired[out.latent_indices.flatten()] = 0

    @torch.no_grad()
    def reconstruct(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        top_acts, top_indices, _ = self.sae.encode(v)
        recon = self.sae.decode(top_acts, top_indices)
        fired = torch.zeros(self.sae.num_latents, dtype=torch.bool, device=top_indices.device)
        fired[top_indices[top_acts > 0]] = True
        return recon, (top_acts > 0).sum(-1), fired


FACTORIES = {"saelens": SAELens, "overcomplete": Overcomplete, "dictionary_learning": DictionaryLearning,
             "saev": Saev, "sparsify": Sparsify}
