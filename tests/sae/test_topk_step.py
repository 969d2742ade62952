"""The sparse TopK training step equals plain autograd ops: the encoder node with b_dec folded in (values and
gradients in fp64, with and without AuxK), the Sᵀ·src product, the recycled W_enc gradient buffer, the blocked
decoder-gradient projection, the fused mean reconstruction loss, and whole updater steps against the dense
TopK reference path."""

from __future__ import annotations

import pytest
import torch

from clipsteer.sae import SAEConfig, SparseAutoencoder
from clipsteer.sae import model as model_module
from clipsteer.sae.objectives import ObjectiveConfig, mean_reconstruction_loss, reconstruction_loss
from clipsteer.sae.recipe import SAERecipe, TrainerConfig
from clipsteer.sae.sparse import scatter_rows, topk_encode
from clipsteer.sae.updater import SAEUpdater
from clipsteer.sae.workspace import W_ENC_GRAD, Workspace

D_IN, D_SAE, N, K = 12, 40, 64, 5


def _params(seed: int = 3) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D_IN, generator=g)
    W = torch.randn(D_IN, D_SAE, generator=g).requires_grad_()
    b_enc = torch.randn(D_SAE, generator=g).requires_grad_()
    b_dec = torch.randn(D_IN, generator=g).requires_grad_()
    return x, W, b_enc, b_dec


def _dense(indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.zeros(N, D_SAE, dtype=values.dtype).scatter(1, indices, values)


@pytest.mark.parametrize("k_aux", [0, 6])
def test_encoder_node_with_b_dec_matches_plain_ops(k_aux: int) -> None:
    """fp32 node against fp64 autograd on the same numbers (pre = (x − b_dec)·W + b_enc, top-k, ReLU)."""
    x, W, b_enc, b_dec = _params()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    g = torch.Generator().manual_seed(9)
    weight_values = torch.randn(N, D_SAE, generator=g, dtype=torch.float64)  # loss weight of each (token, feature)
    weight_aux = torch.randn(N, D_SAE, generator=g, dtype=torch.float64)

    ref_params = [p.detach().double().requires_grad_() for p in (W, b_enc, b_dec)]
    pre = (x.double() - ref_params[2]) @ ref_params[0] + ref_params[1]
    top = pre.topk(K, dim=-1)
    codes_ref = _dense(top.indices, top.values.relu())
    loss_ref = (codes_ref * weight_values).sum()
    if k_aux:
        aux = pre.masked_fill(~dead, float("-inf")).topk(k_aux, dim=-1)
        aux_ref = torch.zeros(N, D_SAE, dtype=torch.float64).scatter(1, aux.indices, aux.values)
        loss_ref = loss_ref + (aux_ref * weight_aux).sum()
    grads_ref = torch.autograd.grad(loss_ref, ref_params)

    workspace = Workspace()
    for _ in range(2):  # the second call writes the W gradient into the buffer handed back
        values, indices, aux_values, aux_indices = topk_encode(x, W, b_enc, K, dead if k_aux else None, k_aux,
                                                               workspace, b_dec=b_dec)
        codes = _dense(indices, values)
        torch.testing.assert_close(codes, codes_ref.float())
        loss = (codes.double() * weight_values).sum()
        if k_aux:
            aux_codes = _dense(aux_indices, aux_values)
            torch.testing.assert_close(aux_codes, aux_ref.float())
            loss = loss + (aux_codes.double() * weight_aux).sum()
        grads = torch.autograd.grad(loss, (W, b_enc, b_dec))
        for name, got, want in zip(("W", "b_enc", "b_dec"), grads, grads_ref, strict=True):
            torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5, msg=name)
        workspace.give(W_ENC_GRAD, grads[0])
        recycled = grads[0].data_ptr()
    (grad_w,) = torch.autograd.grad(topk_encode(x, W, b_enc, K, workspace=workspace, b_dec=b_dec)[0].sum(), W)
    assert grad_w.data_ptr() == recycled  # written into the buffer given back, not a new one


def test_without_b_dec_the_node_is_plain_topk() -> None:
    x, W, b_enc, b_dec = _params()
    shifted = b_enc - b_dec @ W
    a = topk_encode(x, W, b_enc, K, b_dec=b_dec)
    b = topk_encode(x, W, shifted, K)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    with pytest.raises(ValueError, match=r"b_dec has shape \(5,\); expected \[d_in=12\]"):
        topk_encode(x, W, b_enc, K, b_dec=torch.zeros(5))


def test_scatter_rows_is_the_transposed_sparse_product() -> None:
    g = torch.Generator().manual_seed(1)
    others = torch.cat([torch.arange(7), torch.arange(8, D_SAE)])
    # feature 7 in every row (many entries summed into one output row), the rest distinct per row
    indices = torch.stack([torch.cat([torch.tensor([7]), others[torch.randperm(D_SAE - 1, generator=g)[:K - 1]]])
                           for _ in range(N)])
    weights = torch.randn(N, K, generator=g)
    src = torch.randn(N, D_IN, generator=g)
    dense = torch.zeros(N, D_SAE).scatter(1, indices, weights)
    torch.testing.assert_close(scatter_rows(indices, weights, src, D_SAE), dense.t() @ src, rtol=1e-5, atol=1e-5)


def test_blocked_decoder_projection_equals_the_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "PROJECTION_ROWS", 7)  # several blocks, the last one short
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=K),
                            generator=torch.Generator().manual_seed(0))
    grad = torch.randn(D_SAE, D_IN, generator=torch.Generator().manual_seed(2))
    sae.W_dec.grad = grad.clone()
    sae.remove_parallel_decoder_grad_()
    W = sae.W_dec.detach()
    torch.testing.assert_close(sae.W_dec.grad, grad - (grad * W).sum(dim=1, keepdim=True) * W, rtol=0, atol=1e-6)


def _topk_sae(impl: str) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=K, normalization="layer_norm"),
                            generator=torch.Generator().manual_seed(0), topk_impl=impl)  # type: ignore[arg-type]
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        sae.b_enc.copy_(0.2 * torch.randn(D_SAE, generator=g))
        sae.b_dec.copy_(0.3 * torch.randn(D_IN, generator=g))
        sae.b_enc[:10] = -50.0  # never selected: with a 1-step window they are dead, so AuxK runs
    return sae


def test_training_steps_equal_the_dense_reference() -> None:
    config = TrainerConfig(tokens_per_batch=N, total_tokens=N * 6, lr=1e-3, lr_warmup_steps=0, progress=False,
                           dead_feature_window=1)
    objective = ObjectiveConfig(auxk_coefficient=0.5)
    finals = []
    for impl in ("sparse", "dense"):
        sae = _topk_sae(impl)
        updater = SAEUpdater(SAERecipe("t", sae.config, objective), sae, config)
        rows, buffers = [], []
        for step in range(6):
            rows.append(updater.step(2 * torch.randn(N, D_IN, generator=torch.Generator().manual_seed(step)) + 0.5,
                                     step, lr=1e-3, want_metrics=True))
            buffers.append(sae.W_enc.grad.data_ptr())
        finals.append((rows, sae.state_dict(), buffers))
    (rows_s, state_s, buffers_s), (rows_d, state_d, _) = finals
    assert any(row["frac_dead"] > 0 for row in rows_s)  # type: ignore[index]
    assert len(set(buffers_s[1:])) == 1  # the sparse path rewrites one W_enc gradient buffer every step
    for a, b in zip(rows_s, rows_d, strict=True):
        assert a is not None and b is not None and a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    for name in state_s:
        torch.testing.assert_close(state_s[name], state_d[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("kind", ["paper", "mse"])
def test_mean_reconstruction_loss_equals_the_elementwise_mean(kind: str) -> None:
    g = torch.Generator().manual_seed(4)
    x = 3 * torch.randn(N, D_IN, generator=g, dtype=torch.float64) + 1
    recon = torch.randn(N, D_IN, generator=g, dtype=torch.float64).requires_grad_()
    want = reconstruction_loss(recon, x, kind).mean()
    (grad_want,) = torch.autograd.grad(want, recon)
    got = mean_reconstruction_loss(recon, x, kind)
    (grad_got,) = torch.autograd.grad(3 * got, recon)  # a non-unit upstream gradient is passed on
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(grad_got, 3 * grad_want)


def test_reconstruction_loss_matches_its_formula() -> None:
    """paper: squared error over each token's norm of the batch-centred input (a norm, not its square); mse: plain."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(N, D_IN, generator=g, dtype=torch.float64) * torch.linspace(0.1, 10, N, dtype=torch.float64)[:, None]
    recon = x + torch.randn(N, D_IN, generator=g, dtype=torch.float64)
    sq = (recon - x).pow(2)
    norms = (x - x.mean(0)).norm(dim=-1)
    torch.testing.assert_close(reconstruction_loss(recon, x, "paper"), sq / norms[:, None])
    torch.testing.assert_close(reconstruction_loss(recon, x, "mse"), sq)
