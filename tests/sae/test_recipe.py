"""Training recipes: the fitted initial encoder scale, and `--recipe paper` reproducing the paper's settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from sparse_world import SparseWorld

from clipsteer.sae import (
    ObjectiveConfig,
    SAEConfig,
    SAERecipe,
    SparseAutoencoder,
    TensorSource,
    Trainer,
    TrainerConfig,
)
from clipsteer.sae.commands import apply_recipe, build_recipes
from clipsteer.sae.configs import TrainConfig
from clipsteer.sae.recipe import RECIPES
from clipsteer.sae.trainer import fit_encoder_scale_
from clipsteer.sae.updater import SAEUpdater

D = 32


def initialised(world: SparseWorld, architecture: str, encoder_init: str, d_sae: int = 256,
                k: int = 4) -> SparseAutoencoder:
    k = k if architecture in ("topk", "batchtopk") else None
    recipe = SAERecipe("a", SAEConfig(d_in=D, d_sae=d_sae, architecture=architecture, k=k),
                       ObjectiveConfig(jumprelu_init_threshold=0.05))
    trainer = Trainer([recipe], TensorSource(world.data[:2048]),
                      TrainerConfig(tokens_per_batch=256, total_tokens=256, init_samples=1024, encoder_init=encoder_init,
                                    progress=False))
    (updater,) = trainer._build_updaters()
    trainer._initialise([updater])
    return updater.sae


def normalised_residual(sae: SparseAutoencoder, x: torch.Tensor) -> tuple[float, float]:
    """(Σ‖x̃ − x̂̃‖², Σ‖x̃ − b_dec‖²) in the SAE's normalised space."""
    sae.train()
    with torch.no_grad():
        trace = sae.trace(x)
        return (float((trace.x_norm - trace.recon_norm).pow(2).sum()),
                float((trace.x_norm - sae.b_dec).pow(2).sum()))


@pytest.mark.parametrize("architecture", ["relu", "batchtopk", "jumprelu"])
def test_fitted_scale_is_least_squares_and_only_rescales_codes(world: SparseWorld,
                                                                               architecture: str) -> None:
    plain = initialised(world, architecture, "decoder_transpose")
    fitted = initialised(world, architecture, "fitted_scale")
    x = world.data[:1024]
    torch.testing.assert_close(fitted.W_dec, plain.W_dec, rtol=0, atol=0)
    torch.testing.assert_close(fitted.b_dec, plain.b_dec, rtol=0, atol=0)
    scale = float(fitted.W_enc.detach().norm() / plain.W_enc.detach().norm())
    assert scale != pytest.approx(1.0, abs=1e-3)
    fitted.train(), plain.train()
    with torch.no_grad():
        torch.testing.assert_close(fitted.trace(x).recon_norm - fitted.b_dec,
                                   scale * (plain.trace(x).recon_norm - plain.b_dec), rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the scale each fit asks for, measured on rows the init sample did not all contain
        produced = plain.trace(x).recon_norm - plain.b_dec
        target = plain.normalize_input(x)[0] - plain.b_dec
    assert fitted.spec.encoder_scale.fit == "least_squares"
    assert scale == pytest.approx(float((target * produced).sum() / produced.pow(2).sum()), rel=0.05)
    # the fit is idempotent: after fitting on x, refitting on x finds nothing left to fix; rows of the
    # same distribution that the init sample did not contain need little
    assert fit_encoder_scale_(fitted, x) == pytest.approx(1.0, rel=0.05)
    assert fit_encoder_scale_(fitted, x) == pytest.approx(1.0, rel=1e-4)
    # so the first reconstruction is never worse than b_dec alone; the plain transpose is far worse for relu
    residual, baseline = normalised_residual(fitted, x)
    assert residual <= baseline
    if architecture == "relu":
        assert normalised_residual(plain, x)[0] > 4 * baseline   # d_sae/(2 d_in) = 4: a 4x too large reconstruction


@pytest.mark.parametrize("k, capped", [(1, True), (4, False), (16, False)])
def test_topk_scale_matches_norms_up_to_the_transpose(world: SparseWorld, k: int, capped: bool) -> None:
    """TopK's first reconstruction is made as large as the input (‖c·p‖ = ‖t‖), but the encoder never grows
    beyond W_decᵀ: k = 1 asks for c ≈ 2 (one projection is far smaller than the input) and gets the plain
    transpose; k = 4 and 16 ask for ≈ 0.95 and 0.43. The selection is the transpose's; codes scale by c."""
    plain = initialised(world, "topk", "decoder_transpose", k=k)
    fitted = initialised(world, "topk", "fitted_scale", k=k)
    rule = fitted.spec.encoder_scale
    assert rule.fit == "norm" and rule.high == 1.0
    x = world.data[:1024]
    fitted.train(), plain.train()
    with torch.no_grad():
        a, b = fitted.trace(x), plain.trace(x)
        target = plain.normalize_input(x)[0] - plain.b_dec
        asked = float(target.norm() / (b.recon_norm - plain.b_dec).norm())
    c = float(fitted.W_enc.detach().norm() / plain.W_enc.detach().norm())
    assert (asked > rule.high) == capped
    assert c == pytest.approx(rule.high if capped else asked, rel=1e-6 if capped else 0.05)
    if capped:
        assert asked > 1.5  # what norm matching alone would ask for with k = 1
        torch.testing.assert_close(fitted.W_enc, plain.W_enc, rtol=0, atol=0)
    assert torch.equal(a.indices, b.indices)  # TopK's sparse path: [N, k] kept features and their values
    torch.testing.assert_close(a.values, c * b.values, rtol=1e-5, atol=1e-6)


def test_wider_topk_saes_get_a_larger_encoder_scale(world: SparseWorld) -> None:
    """Above ×16 the norm-matched c is multiplied by √(E / 16) before the cap: at ×64, 2c."""
    rule = initialised(world, "topk", "fitted_scale").spec.encoder_scale
    assert rule.wide_from == 16
    assert rule.widen(0.4, 8) == 0.4 and rule.widen(0.4, 16) == 0.4
    assert rule.widen(0.4, 64) == pytest.approx(0.8) and rule.widen(0.7, 64) == 1.0
    x = world.data[:1024]
    for d_sae, factor in ((16 * D, 1.0), (64 * D, 2.0)):
        plain = initialised(world, "topk", "decoder_transpose", d_sae=d_sae, k=16)
        fitted = initialised(world, "topk", "fitted_scale", d_sae=d_sae, k=16)
        plain.train()
        with torch.no_grad():
            target = plain.normalize_input(x)[0] - plain.b_dec
            asked = float(target.norm() / (plain.trace(x).recon_norm - plain.b_dec).norm())
        assert factor * asked < rule.high  # the widening, not the cap, sets c here
        c = float(fitted.W_enc.detach().norm() / plain.W_enc.detach().norm())
        assert c == pytest.approx(factor * asked, rel=0.05)


def test_paper_recipe_restores_the_papers_settings() -> None:
    paper = apply_recipe(TrainConfig(store=Path("s"), recipe="paper"))
    assert paper.normalization == "layer_norm" and paper.objective.reconstruction == "paper"
    assert paper.trainer.encoder_init == "decoder_transpose" and paper.trainer.max_grad_norm == 1.0
    assert paper.objective.sparsity_coefficient == 1e-4 and paper.trainer.lr == 4e-4
    assert paper.trainer.lr_warmup_steps == 200 and paper.trainer.tokens_per_batch == 4096
    assert paper.objective.sparsity_warmup_steps == 0 and paper.trainer.gradient_rescale == 0
    default = apply_recipe(TrainConfig(store=Path("s")))
    preset = RECIPES["default"]
    assert (default.normalization, default.objective.reconstruction, default.trainer.encoder_init,
            default.trainer.max_grad_norm, default.objective.sparsity_warmup_steps) == (
        preset.normalization, preset.reconstruction, preset.encoder_init, preset.max_grad_norm,
        preset.sparsity_warmup_steps)
    assert preset.sparsity_warmup_steps == 60
    # the config classes' defaults are the default recipe's
    assert TrainConfig(store=Path("s")).trainer.max_grad_norm == preset.max_grad_norm
    assert TrainConfig(store=Path("s")).objective.sparsity_warmup_steps == preset.sparsity_warmup_steps
    # explicit choices win over the recipe
    mixed = apply_recipe(TrainConfig(store=Path("s"), recipe="paper", normalization="none",
                                     objective=replace(ObjectiveConfig(), reconstruction="mse",
                                                       sparsity_warmup_steps=10),
                                     trainer=TrainerConfig(max_grad_norm=None)))
    assert mixed.normalization == "none" and mixed.objective.reconstruction == "mse"
    assert mixed.objective.sparsity_warmup_steps == 10
    assert mixed.trainer.max_grad_norm is None
    (built,) = build_recipes(TrainConfig(store=Path("s"), recipe="paper"), d_in=D)
    assert built.sae.normalization == "layer_norm" and built.objective.reconstruction == "paper"


@pytest.mark.parametrize(("architecture", "max_grad_norm", "expected"), [
    ("relu", "per_architecture", 0.02), ("topk", "per_architecture", 1.0), ("jumprelu", "per_architecture", 1.0),
    ("relu", 1.0, 1.0), ("topk", 0.5, 0.5), ("relu", None, None)])
def test_gradient_clip_per_architecture(architecture: str, max_grad_norm: float | str | None,
                                        expected: float | None) -> None:
    config = SAEConfig(d_in=D, d_sae=4 * D, architecture=architecture, k=4 if architecture == "topk" else None)
    updater = SAEUpdater(SAERecipe("x", config), SparseAutoencoder(config), TrainerConfig(max_grad_norm=max_grad_norm))
    assert updater.max_grad_norm == expected


@pytest.mark.parametrize(("rescale", "max_grad_norm", "expected"), [
    (0.0, "per_architecture", 0.0), (1.0, "per_architecture", 1.0), (0.5, 0.02, 0.5), (0.0, None, 0.0)])
def test_gradient_rescale_is_opt_in(rescale: float, max_grad_norm: float | str | None, expected: float) -> None:
    config = SAEConfig(d_in=D, d_sae=4 * D, architecture="topk", k=4)
    trainer = TrainerConfig(max_grad_norm=max_grad_norm, gradient_rescale=rescale)  # type: ignore[arg-type]
    assert SAEUpdater(SAERecipe("x", config), SparseAutoencoder(config), trainer).gradient_rescale == expected
    assert TrainerConfig().gradient_rescale == 0.0


@pytest.mark.parametrize("power", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("target", [10.0, 1e-3])
def test_adam_sees_the_rescaled_gradient(world: SparseWorld, power: float, target: float) -> None:
    """A gradient of norm n below the clip c reaches Adam at norm c^p·n^(1−p); one above it is clipped to c
    whatever p (here the raw norm lies between the two clips)."""
    config = SAEConfig(d_in=D, d_sae=4 * D, architecture="topk", k=4)
    updater = SAEUpdater(SAERecipe("x", config), SparseAutoencoder(config),
                         TrainerConfig(max_grad_norm=target, gradient_rescale=power))
    seen: list[float] = []
    adam_step = updater.optimizer.step

    def recording_step(*args: object, **kwargs: object) -> object:
        grads = [p.grad for p in updater.sae.parameters() if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return adam_step(*args, **kwargs)

    updater.optimizer.step = recording_step  # type: ignore[method-assign]
    metrics = updater.step(world.data[:256], 0, 1e-3, want_metrics=True)
    assert metrics is not None and 1e-3 < metrics["grad_norm"] < 10.0  # the raw norm, logged before rescaling
    raw = metrics["grad_norm"]
    expected = target ** power * raw ** (1 - power) if raw < target else target
    assert seen == [pytest.approx(expected, rel=1e-4)]


@pytest.mark.parametrize("rescale", [-0.1, 1.5, float("nan"), True, "always"])
def test_gradient_rescale_rejects_a_bad_value(rescale: object) -> None:
    with pytest.raises(ValueError, match="gradient_rescale"):
        TrainerConfig(gradient_rescale=rescale)  # type: ignore[arg-type]


def test_gradient_rescale_needs_a_norm() -> None:
    with pytest.raises(ValueError, match="gradient_rescale"):
        TrainerConfig(max_grad_norm=None, gradient_rescale=0.5)
    assert TrainerConfig(max_grad_norm=None, gradient_rescale=0.0).max_grad_norm is None


def test_gradient_clip_rejects_a_bad_value() -> None:
    with pytest.raises(ValueError, match="max_grad_norm"):
        TrainerConfig(max_grad_norm="per_sae")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_grad_norm"):
        TrainerConfig(max_grad_norm=0.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        TrainerConfig(max_grad_norm=True)  # a bool is an int to Python, not a clip


@pytest.mark.parametrize("factor", [1.0, 0.25])
def test_bias_lr_factor_scales_the_biases_steps_only(world: SparseWorld, factor: float) -> None:
    """Adam's first step moves every element with a gradient by lr·sign(gradient): by lr·factor for b_enc and
    b_dec, by lr for W_enc."""
    config = SAEConfig(d_in=D, d_sae=4 * D, architecture="topk", k=4)
    updater = SAEUpdater(SAERecipe("x", config), SparseAutoencoder(config), TrainerConfig(bias_lr_factor=factor))
    sae, lr = updater.sae, 1e-3
    before = {name: p.detach().clone() for name, p in sae.named_parameters()}
    updater.step(world.data[:256], 0, lr)
    for name, expected in (("b_enc", lr * factor), ("b_dec", lr * factor), ("W_enc", lr)):
        moved = (getattr(sae, name).detach() - before[name]).abs()
        assert moved.max() == pytest.approx(expected, rel=1e-3), name
    assert len(updater.optimizer.param_groups) == (1 if factor == 1 else 2)  # the default keeps one group


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan"), True, "fast"])
def test_bias_lr_factor_must_be_positive(factor: object) -> None:
    with pytest.raises(ValueError, match="bias_lr_factor"):
        TrainerConfig(bias_lr_factor=factor)  # type: ignore[arg-type]
