"""`clipsteer train`: train one SAE, or a sweep sharing one data stream, on an activation store.

    clipsteer train --store acts/blocks.8.resid_post --out runs/sae_l8 --architecture relu \
        --sweep-sparsity 1e-5 5e-5 1e-4
    clipsteer train --store acts/blocks.8.resid_post --out runs/topk_l8 --architecture topk --sweep-k 32 64
    clipsteer train --store acts/blocks.8.resid_post --out runs/paper_l8 --recipe paper   # the paper's recipe exactly

Rerunning the same command resumes from the newest checkpoint in `--out`. The final SAEs land in
`<out>/saes/<name>/` (config.json + sae.safetensors).

Under torchrun (docs/scaling-out.md) `--dist.mode recipes` spreads the sweep's SAEs over the ranks (rank r
keeps its run folder in `<out>/rank_<r>/`), and `--dist.mode data` trains every SAE data-parallel in
`<out>` itself (rank 0 writes):

    torchrun --nproc-per-node 2 -m clipsteer train --store acts/blocks.8.resid_post --dist.mode data
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from clipsteer.errors import check_positive
from clipsteer.run_folder import folder_lock
from clipsteer.sae.architectures import spec
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.configs import TrainConfig
from clipsteer.sae.distributed import (
    LOCAL,
    DistributedError,
    Rank,
    RankSlice,
    Sync,
    process_group,
    recipes_for,
)
from clipsteer.sae.recipe import RECIPES, SAERecipe
from clipsteer.sae.trainer import Trainer


def _store_description(source: object) -> tuple[str | None, str | None]:
    """(site, model) recorded in the store's metadata, when the loader exposes it."""
    spec = getattr(getattr(getattr(source, "store", None), "meta", None), "spec", None)
    return getattr(spec, "site", None), getattr(spec, "model_name", None)


def apply_recipe(config: TrainConfig) -> TrainConfig:
    """`config` with its recipe's settings filled in wherever it still holds the default recipe's."""
    preset, default = RECIPES[config.recipe], RECIPES["default"]
    objective, trainer = config.objective, config.trainer
    if objective.reconstruction == default.reconstruction:
        objective = replace(objective, reconstruction=preset.reconstruction)
    if objective.sparsity_warmup_steps == default.sparsity_warmup_steps:
        objective = replace(objective, sparsity_warmup_steps=preset.sparsity_warmup_steps)
    if trainer.encoder_init == default.encoder_init:
        trainer = replace(trainer, encoder_init=preset.encoder_init)
    if trainer.max_grad_norm == default.max_grad_norm:
        trainer = replace(trainer, max_grad_norm=preset.max_grad_norm)
    return replace(config, normalization=config.normalization or preset.normalization, objective=objective,
                   trainer=trainer)


def build_recipes(config: TrainConfig, d_in: int, site: str | None = None, model: str | None = None) -> list[SAERecipe]:
    config = apply_recipe(config)
    assert config.normalization is not None
    uses_k = spec(config.architecture).uses_k
    if config.sweep_k and not uses_k:
        raise ValueError(f"--sweep-k needs architecture topk or batchtopk, not {config.architecture!r}")
    if config.sweep_sparsity and uses_k:
        raise ValueError(f"--sweep-sparsity has no effect on {config.architecture!r} SAEs (k sets the sparsity)")
    base = SAEConfig(d_in=d_in, d_sae=d_in * config.expansion_factor, architecture=config.architecture,
                     k=config.k if uses_k else None, normalization=config.normalization, site=site,
                     tokens=config.tokens, model=model)
    stem = f"{config.architecture}_x{config.expansion_factor}"
    if config.sweep_k:
        return [SAERecipe(f"{stem}_k{k}", replace(base, k=k), config.objective) for k in config.sweep_k]
    if config.sweep_sparsity:
        return [SAERecipe(f"{stem}_lambda{lam:g}", base, replace(config.objective, sparsity_coefficient=lam))
                for lam in config.sweep_sparsity]
    suffix = f"_k{config.k}" if uses_k else f"_lambda{config.objective.sparsity_coefficient:g}"
    return [SAERecipe(stem + suffix, base, config.objective)]


def train(config: TrainConfig) -> dict[str, Path]:
    """Run (or resume) the training described by `config`; returns the SAE folders this process trained
    (all of them, except in recipes mode under torchrun: this rank's share)."""
    with process_group(config.trainer.device, config.dist.backend, config.dist.timeout_s) as rank:
        return _train(config, rank)


def _train(config: TrainConfig, rank: Rank) -> dict[str, Path]:
    from clipsteer.activations.loaders import open_shuffled

    if config.store is None:
        raise ValueError("train: --store is required (an activation store folder written by `clipsteer harvest`)")
    check_positive(config, ("expansion_factor", "k"))
    mode = config.dist.mode
    if rank.world > 1 and mode == "none":
        raise DistributedError(f"launched as {rank.world} processes but --dist.mode is none; choose --dist.mode "
                               "recipes (spread the sweep's SAEs over ranks) or data (data-parallel training)")
    source = open_shuffled(config.store, tokens=config.tokens)
    site, model = _store_description(source)
    recipes = build_recipes(config, source.d_in, site, model)
    extra = {"store": str(config.store), "tokens": config.tokens}
    trainer_config = apply_recipe(config).trainer
    if mode == "recipes" and rank.world > 1:
        # No communication: every rank holds a shared lock on OUT (so a single-process run into OUT is
        # refused while the sweep runs) and its Trainer the exclusive lock on its own OUT/rank_<r>/.
        mine = recipes_for(rank, recipes)
        if not mine:
            print(f"rank {rank.index}: the sweep has fewer SAEs than the {rank.world} ranks; nothing to train here")
            return {}
        with folder_lock(config.out, "train --dist.mode recipes", shared=True):
            Trainer(mine, source, trainer_config, run_dir=config.out / f"rank_{rank.index}", extra=extra,
                    saes_dir=config.out / "saes").run(resume=config.resume)
        folders = {recipe.name: config.out / "saes" / recipe.name for recipe in mine}
        for name, folder in folders.items():
            print(f"rank {rank.index}: {name}: {folder}")
        return folders
    sync = LOCAL
    if mode == "data":
        source, sync = RankSlice(source, rank), Sync(rank)
    trainer = Trainer(recipes, source, trainer_config, run_dir=config.out, extra=extra, sync=sync)
    trainer.run(resume=config.resume)
    folders = {recipe.name: config.out / "saes" / recipe.name for recipe in recipes}
    if sync.rank.is_main:
        for name, folder in folders.items():
            print(f"{name}: {folder}")
    return folders
