"""SparseAutoencoder: shapes, per-architecture invariants, the sparse TopK path, normalisation conventions."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clipsteer.sae import SAEConfig, SAEConfigError, SAEInputError, SparseAutoencoder
from clipsteer.sae.geometric_median import geometric_median
from clipsteer.sae.normalization import denormalize, estimate_input_scale, normalize
from clipsteer.sae.recipe import ObjectiveConfig, SAERecipe, TrainerConfig
from clipsteer.sae.sparse import sparse_decode, topk_encode
from clipsteer.sae.updater import SAEUpdater

D_IN, D_SAE = 16, 48


def make_sae(architecture: str = "relu", normalization: str = "none", k: int | None = None, seed: int = 0,
             topk_impl: str = "sparse") -> SparseAutoencoder:
    if architecture in ("topk", "batchtopk") and k is None:
        k = 4
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=architecture, k=k,
                                      normalization=normalization),
                            generator=torch.Generator().manual_seed(seed), topk_impl=topk_impl)  # type: ignore[arg-type]
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        sae.b_enc.copy_(0.1 * torch.randn(D_SAE, generator=g))
        sae.b_dec.copy_(0.3 * torch.randn(D_IN, generator=g))
    return sae


def inputs(*shape: int, seed: int = 0) -> torch.Tensor:
    return 2 * torch.randn(*shape, D_IN, generator=torch.Generator().manual_seed(seed)) + 0.5


def train_steps(sae: SparseAutoencoder, steps: int = 5, objective: ObjectiveConfig | None = None,
                **trainer: object) -> SAEUpdater:
    config = TrainerConfig(tokens_per_batch=64, total_tokens=64 * steps, lr=1e-2, lr_warmup_steps=0, progress=False,
                           **trainer)  # type: ignore[arg-type]
    updater = SAEUpdater(SAERecipe("t", sae.config, objective or ObjectiveConfig(sparsity_coefficient=1e-3)), sae,
                         config)
    for step in range(steps):
        updater.step(inputs(64, seed=step), step, lr=1e-2)
    return updater


# ----- construction and config -------------------------------------------------------------------------

def test_initialisation_is_the_papers() -> None:
    sae = make_sae()
    fresh = SparseAutoencoder(sae.config, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fresh.W_dec.norm(dim=1), torch.ones(D_SAE))
    torch.testing.assert_close(fresh.W_enc, fresh.W_dec.T)
    assert not fresh.b_enc.any() and not fresh.b_dec.any()


@pytest.mark.parametrize(("changes", "message"), [
    ({"d_in": 0}, "d_in"), ({"architecture": "gated"}, "architecture"), ({"architecture": "topk"}, "k"),
    ({"k": 3}, "k=3"), ({"normalization": "batch_norm"}, "normalization"), ({"tokens": "some"}, "tokens"),
])
def test_invalid_configs_are_explained(changes: dict, message: str) -> None:
    fields = {"d_in": 8, "d_sae": 16, **changes}
    with pytest.raises(SAEConfigError, match=message):
        SAEConfig(**fields)


def test_config_from_dict_names_missing_and_unknown_fields() -> None:
    with pytest.raises(SAEConfigError, match=r"my.json: missing required field\(s\) \['d_sae'\]"):
        SAEConfig.from_dict({"d_in": 4}, where="my.json")
    with pytest.raises(SAEConfigError, match=r"unknown field\(s\) \['colour'\]"):
        SAEConfig.from_dict({"d_in": 4, "d_sae": 8, "colour": "red"}, where="my.json")


# ----- API: shapes, leading dimensions, errors ------------------------------------------------------------

@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk", "jumprelu"])
@pytest.mark.parametrize("normalization", ["none", "layer_norm", "token_rescale"])
def test_leading_dimensions_match_flat_calls(architecture: str, normalization: str) -> None:
    sae = make_sae(architecture, normalization).eval()
    if architecture == "batchtopk":
        sae.batch_threshold.fill_(0.2)
    h = inputs(3, 5)
    codes = sae.encode(h)
    assert codes.shape == (3, 5, D_SAE) and bool((codes >= 0).all())
    torch.testing.assert_close(codes.reshape(15, D_SAE), sae.encode(h.reshape(15, D_IN)))
    recon = sae.decode(codes, x=h)
    assert recon.shape == h.shape
    out = sae(h)
    torch.testing.assert_close(out.reconstruction, recon, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.codes, codes)


def test_wrong_width_is_refused_with_the_expected_shape() -> None:
    sae = SparseAutoencoder(dataclasses.replace(SAEConfig(d_in=D_IN, d_sae=D_SAE), site="blocks.3.resid_post"))
    with pytest.raises(SAEInputError, match=r"expected shape \[\.\.\., d_in=16\], got \(2, 7, 12\).*blocks\.3\.resid_post"):
        sae.encode(torch.randn(2, 7, 12))
    with pytest.raises(SAEInputError, match=r"d_sae=48"):
        sae.decode(torch.randn(4, 47))


def test_layer_norm_decode_needs_the_input() -> None:
    sae = make_sae(normalization="layer_norm")
    h = inputs(4)
    with pytest.raises(SAEInputError, match=r"normalises each token \(layer_norm\).*decode\(codes, x=activations\)"):
        sae.decode(sae.encode(h))
    with pytest.raises(SAEInputError, match="x has 3 tokens but the codes have 4"):
        sae.decode(sae.encode(h), x=h[:3])


# ----- architecture invariants -----------------------------------------------------------------------------

def test_topk_has_exactly_k_nonzeros_and_distinct_indices() -> None:
    sae = make_sae("topk", k=6)
    with torch.no_grad():
        sae.b_enc.fill_(5.0)  # all pre-activations positive, so ReLU after top-k removes nothing
    h = inputs(7, 9)
    values, indices = sae.encode_sparse(h)
    assert values.shape == indices.shape == (7, 9, 6)
    assert bool((values > 0).all())
    assert bool((indices.sort(dim=-1).values.diff(dim=-1) > 0).all())  # distinct per token
    codes = sae.encode(h)
    assert bool(((codes != 0).sum(dim=-1) == 6).all())
    # they are the 6 largest pre-activations
    pre = sae.pre_activations(h.reshape(-1, D_IN))
    torch.testing.assert_close(codes.reshape(-1, D_SAE).topk(6).values, pre.topk(6).values)


def test_topk_relu_can_leave_fewer_than_k() -> None:
    sae = make_sae("topk", k=6)
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)
    assert not sae.encode(inputs(5)).any()


def test_sparse_topk_path_matches_dense_reference_including_gradients() -> None:
    """The fused sparse encoder/decoder gives the same loss and parameter gradients as dense autograd."""
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    grads = {}
    for impl in ("sparse", "dense"):
        sae = make_sae("topk", "layer_norm", k=5, topk_impl=impl)
        trace = sae.trace(inputs(32), dead_mask=dead, k_aux=7)
        from clipsteer.sae.objectives import compute_losses
        losses = compute_losses(sae, trace, ObjectiveConfig(auxk_coefficient=0.5), 0.0, dead)
        losses.total.backward()
        grads[impl] = {n: p.grad.clone() for n, p in sae.named_parameters()} | {"loss": losses.total.detach(),
                                                                            "auxk": losses.terms["auxk"]}
    for name, value in grads["dense"].items():
        torch.testing.assert_close(grads["sparse"][name], value, atol=1e-5, rtol=1e-4, msg=name)


def test_auxk_weight_is_relative_to_the_main_loss_whatever_its_scale() -> None:
    """AuxK's α weighs it against the main loss in normalised-MSE units (Gao et al.): the term over the
    reconstruction loss is the same under the paper's loss and plain MSE (scales ≈ 1000× apart), and equals
    min(n_dead/k_aux, 1)·‖ê − e‖²/‖e − ē‖² / (‖x̂ − x‖²/‖x − x̄‖²) computed by hand."""
    from clipsteer.sae.objectives import compute_losses
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    n_dead, k_aux = int(dead.sum()), 7
    sae = make_sae("topk", "layer_norm", k=5)
    trace = sae.trace(inputs(32), dead_mask=dead, k_aux=k_aux)
    ratios = []
    for kind in ("paper", "mse"):
        losses = compute_losses(sae, trace, ObjectiveConfig(reconstruction=kind, auxk_k=k_aux), 0.0, dead)
        ratios.append(float(losses.terms["auxk"] / losses.terms["reconstruction"]))
    with torch.no_grad():
        x, recon = trace.x_norm.float(), trace.recon_norm.float()
        e = x - recon
        aux_recon = torch.zeros(32, D_SAE).scatter(1, trace.aux_indices, trace.aux_values) @ sae.W_dec
        gao_auxk = min(n_dead / k_aux, 1.0) * (aux_recon - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
        main_nmse = e.pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert ratios[0] == pytest.approx(ratios[1], rel=1e-4)
    assert ratios[0] == pytest.approx(float(gao_auxk / main_nmse), rel=1e-4)


def test_topk_encode_and_sparse_decode_functions() -> None:
    g = torch.Generator().manual_seed(3)
    x, W, b = torch.randn(10, 8, generator=g), torch.randn(8, 30, generator=g), torch.randn(30, generator=g)
    values, indices, _, _ = topk_encode(x, W, b, 4)
    pre = x @ W + b
    torch.testing.assert_close(values.sort(dim=1).values, pre.topk(4).values.relu().sort(dim=1).values)
    W_dec = torch.randn(30, 8, generator=g)
    dense = torch.zeros(10, 30).scatter(1, indices, values)
    torch.testing.assert_close(sparse_decode(values, indices, W_dec), dense @ W_dec, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="k=31 must be in 1..d_sae=30"):
        topk_encode(x, W, b, 31)


@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk", "jumprelu"])
def test_decoder_rows_stay_unit_norm_and_parallel_gradient_is_removed(architecture: str) -> None:
    sae = make_sae(architecture)
    updater = train_steps(sae, steps=4)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE), atol=1e-6, rtol=0)
    assert updater.optimizer.state  # Adam did step
    # the projected gradient is orthogonal to every decoder row
    sae.zero_grad()
    sae.trace(inputs(64), jumprelu_bandwidth=0.1).recon.pow(2).sum().backward()
    sae.remove_parallel_decoder_grad_()
    grad, rows = sae.W_dec.grad, sae.W_dec.detach()
    assert float(((grad * rows).sum(dim=1).abs() / grad.norm(dim=1).clamp_min(1e-12)).max()) < 1e-5


def test_batchtopk_keeps_k_per_token_on_average_in_training_and_uses_threshold_at_inference() -> None:
    sae = make_sae("batchtopk", k=4)
    updater = train_steps(sae, steps=6)
    threshold = float(sae.batch_threshold)
    assert math.isfinite(threshold) and threshold > 0
    h = inputs(64, seed=99)
    sae.train()
    assert int((sae.encode(h) > 0).sum()) <= 4 * 64
    sae.eval()
    pre = sae.pre_activations(h)
    torch.testing.assert_close(sae.encode(h), pre.relu() * (pre > threshold))
    # moving the threshold changes inference codes accordingly
    sae.batch_threshold.fill_(1e9)
    assert not sae.encode(h).any()
    assert updater.stats.window_tokens == 6 * 64


def test_batchtopk_without_threshold_refuses_inference() -> None:
    sae = make_sae("batchtopk").eval()
    with pytest.raises(RuntimeError, match="no inference threshold yet"):
        sae.encode(inputs(3))


def test_jumprelu_zeroes_below_threshold_and_learns_thresholds() -> None:
    sae = make_sae("jumprelu").eval()
    h = inputs(20)
    pre = sae.pre_activations(h)
    theta = sae.threshold
    torch.testing.assert_close(sae.encode(h), pre * (pre > theta))
    before = sae.log_threshold.detach().clone()
    train_steps(sae, steps=3, objective=ObjectiveConfig(sparsity_coefficient=1e-2, jumprelu_bandwidth=1.0))
    assert not torch.equal(before, sae.log_threshold.detach())  # the STE gives the threshold a gradient


# ----- normalisation and folding -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["none", "layer_norm", "token_rescale"])
def test_normalize_round_trip(kind: str) -> None:
    x = inputs(12) * 5
    x_norm, stats = normalize(x, kind)
    torch.testing.assert_close(denormalize(x_norm, stats), x, atol=1e-4, rtol=1e-5)
    if kind == "layer_norm":  # Prisma's formula: unbiased std, eps added to it
        mu, std = x.mean(-1, keepdim=True), x.std(-1, keepdim=True)
        torch.testing.assert_close(x_norm, (x - mu) / (std + 1e-5))
    if kind == "token_rescale":
        torch.testing.assert_close(x_norm.norm(dim=-1), torch.full((12,), math.sqrt(D_IN)))


@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk", "jumprelu"])
def test_constant_scale_folds_into_weights_without_changing_the_function(architecture: str) -> None:
    sae = make_sae(architecture, "constant_scale").eval()
    h = inputs(30) * 10
    sae.input_scale.fill_(estimate_input_scale(h))
    if architecture == "batchtopk":
        sae.batch_threshold.fill_(0.3)
    folded = sae.folded()
    assert folded.config.normalization == "none" and folded.config.input_scale_folded == pytest.approx(float(sae.input_scale))
    torch.testing.assert_close(folded(h).reconstruction, sae(h).reconstruction, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(folded.encode(h) * float(sae.input_scale), sae.encode(h), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(folded.W_dec.norm(dim=1), torch.ones(D_SAE))  # decoder stays unit norm


def test_estimated_scale_gives_average_norm_sqrt_d() -> None:
    x = inputs(100) * 7
    c = estimate_input_scale(x)
    assert float((x * c).norm(dim=-1).mean()) == pytest.approx(math.sqrt(D_IN), rel=1e-5)


# ----- geometric median ----------------------------------------------------------------------------------------

def test_geometric_median_of_symmetric_points_and_robustness() -> None:
    square = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]) + torch.tensor([3.0, -2.0])
    torch.testing.assert_close(geometric_median(square), torch.tensor([3.0, -2.0]), atol=1e-5, rtol=0)
    cloud = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    outliers = torch.full((50, 4), 1000.0)
    median = geometric_median(torch.cat([cloud, outliers]))
    assert float(median.norm()) < 1.0  # the mean would be pulled to ~90


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=3, max_value=40), st.integers(min_value=1, max_value=5), st.integers(0, 10**6))
def test_geometric_median_minimises_sum_of_distances(n: int, d: int, seed: int) -> None:
    points = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float()
    median = geometric_median(points, max_iter=500, tol=1e-10)
    cost = (points - median).norm(dim=1).sum()
    for direction in torch.eye(d):
        for sign in (1.0, -1.0):
            moved = (points - (median + sign * 1e-2 * direction)).norm(dim=1).sum()
            assert float(moved) >= float(cost) - 1e-4
