"""The fused ReLU training node equals the plain ops it replaces: values, gradients, ghost grads, whole steps."""

from __future__ import annotations

import pytest
import torch

from clipsteer.sae import SAEConfig, SparseAutoencoder
from clipsteer.sae import model as model_module
from clipsteer.sae.fused_relu import relu_autoencode
from clipsteer.sae.objectives import ObjectiveConfig, compute_losses
from clipsteer.sae.recipe import SAERecipe, TrainerConfig
from clipsteer.sae.updater import SAEUpdater
from clipsteer.sae.workspace import Workspace

D_IN, D_SAE, N = 12, 40, 64


def _sae(normalization: str = "layer_norm", seed: int = 0) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE, normalization=normalization),  # type: ignore[arg-type]
                            generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        sae.b_enc.copy_(0.2 * torch.randn(D_SAE, generator=g))
        sae.b_dec.copy_(0.3 * torch.randn(D_IN, generator=g))
    return sae


def _x(seed: int = 0) -> torch.Tensor:
    return 2 * torch.randn(N, D_IN, generator=torch.Generator().manual_seed(seed)) + 0.5


def test_node_matches_plain_ops_in_value_and_gradient() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(N, D_IN, generator=g, dtype=torch.float64).requires_grad_()
    W_enc = torch.randn(D_IN, D_SAE, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(D_SAE, generator=g, dtype=torch.float64).requires_grad_()
    W_dec = torch.randn(D_SAE, D_IN, generator=g, dtype=torch.float64).requires_grad_()
    b_dec = torch.randn(D_IN, generator=g, dtype=torch.float64).requires_grad_()
    target = torch.randn(N, D_IN, generator=g, dtype=torch.float64)
    params = (x, W_enc, bias, W_dec, b_dec)

    codes_ref = torch.relu(x @ W_enc + bias)
    recon_ref = codes_ref @ W_dec + b_dec
    loss_ref = (recon_ref - target).pow(2).mean() + 0.3 * codes_ref.sum(-1).mean()
    grads_ref = torch.autograd.grad(loss_ref, params)

    workspace = Workspace()
    for _ in range(2):  # the second call reuses the workspace's buffers
        recon, l1, codes, sums = relu_autoencode(*params, workspace=workspace)
        loss = (recon - target).pow(2).mean() + 0.3 * l1
        grads = torch.autograd.grad(loss, params)
        torch.testing.assert_close(codes, codes_ref)
        torch.testing.assert_close(recon, recon_ref)
        torch.testing.assert_close(sums, codes_ref.sum(0))
        torch.testing.assert_close(loss, loss_ref)
        for got, want in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(got, want)


def _unfused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "plain_fp32", lambda x, w: False)


@pytest.mark.parametrize("dead", [False, True])
def test_losses_and_gradients_equal_the_generic_path(monkeypatch: pytest.MonkeyPatch, dead: bool) -> None:
    objective = ObjectiveConfig(sparsity_coefficient=1e-2)
    dead_mask = torch.zeros(D_SAE, dtype=torch.bool)
    if dead:
        dead_mask[::3] = True  # ghost grads: the fused path recomputes these features' pre-activations
    results = []
    for fused in (True, False):
        if not fused:
            _unfused(monkeypatch)
        sae = _sae()
        trace = sae.trace(_x(), dead_mask=dead_mask if dead else None)
        assert (trace.pre is None) == fused
        losses = compute_losses(sae, trace, objective, objective.sparsity_coefficient, dead_mask if dead else None)
        losses.total.backward()
        results.append((trace, losses, {n: p.grad.clone() for n, p in sae.named_parameters()}))
    (t1, l1, g1), (t2, l2, g2) = results
    assert set(l1.terms) == set(l2.terms) and ("ghost_grad" in l1.terms) == dead
    for key in l1.terms:
        torch.testing.assert_close(l1.terms[key], l2.terms[key])
    torch.testing.assert_close(t1.codes, t2.codes)
    assert torch.equal(t1.fired, t2.fired) and torch.equal(t1.fire_counts, t2.fire_counts)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-5, atol=1e-6)


def test_training_steps_equal_the_generic_path(monkeypatch: pytest.MonkeyPatch) -> None:
    config = TrainerConfig(tokens_per_batch=N, total_tokens=N * 6, lr=1e-2, lr_warmup_steps=0, progress=False,
                           dead_feature_window=1)  # features die fast, so ghost grads run too
    finals = []
    for fused in (True, False):
        if not fused:
            _unfused(monkeypatch)
        sae = _sae()
        with torch.no_grad():
            sae.b_enc[:8] = -50.0  # never fire
        updater = SAEUpdater(SAERecipe("t", sae.config, ObjectiveConfig(sparsity_coefficient=1e-2)), sae, config)
        rows = [updater.step(_x(step), step, lr=1e-2, want_metrics=True) for step in range(6)]
        finals.append((rows, sae.state_dict()))
    (rows_f, state_f), (rows_g, state_g) = finals
    assert any(row["frac_dead"] > 0 for row in rows_f)  # type: ignore[index]
    for a, b in zip(rows_f, rows_g, strict=True):
        assert a is not None and b is not None
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    for name in state_f:
        torch.testing.assert_close(state_f[name], state_g[name], rtol=1e-4, atol=1e-5)
