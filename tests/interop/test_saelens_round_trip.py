"""Round trips with SAELens itself: SAEs saved by SAELens load in clipsteer, clipsteer's exports load in
SAELens, and both compute the same codes and reconstructions (≤ 1e-5).

Runs where `sae_lens` imports (`make test` installs the `interop` extra); skipped, saying so, elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens", reason="SAELens is not installed: pip install -e '.[interop]'")

from clipsteer.sae import SAEConfig, SparseAutoencoder, load_any_sae  # noqa: E402
from clipsteer.sae.export import export_saelens  # noqa: E402

D_IN, D_SAE, TOL = 64, 256, 1e-5


def inputs(seed: int = 0) -> torch.Tensor:
    return torch.randn(128, D_IN, generator=torch.Generator().manual_seed(seed)) + 0.3


def perturb(module: torch.nn.Module, seed: int) -> None:
    """Random values in every parameter (biases and thresholds included), as a trained SAE has."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "threshold" in name:
                param.copy_(torch.rand(param.shape, generator=g) * 0.3)
            elif param.ndim == 2:
                param.copy_(torch.randn(param.shape, generator=g) * D_IN ** -0.5)
            else:
                param.copy_(torch.randn(param.shape, generator=g) * 0.1)


def saelens_outputs(sae: object, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        codes = sae.encode(x)  # type: ignore[attr-defined]
        return codes, sae.decode(codes)  # type: ignore[attr-defined]


def compare(ours: SparseAutoencoder, theirs: object, x: torch.Tensor, label: str) -> None:
    their_codes, their_recon = saelens_outputs(theirs, x)
    with torch.no_grad():
        codes = ours.encode(x)
        recon = ours.decode(codes, x=x)
    code_error = (codes - their_codes).abs().max().item()
    recon_error = (recon - their_recon).abs().max().item()
    print(f"{label}: codes maxabs {code_error:.1e}, decode maxabs {recon_error:.1e} "
          f"(L0 {float((codes > 0).sum(-1).float().mean()):.1f})")
    assert code_error <= TOL and recon_error <= TOL, label
    assert torch.equal(codes > 0, their_codes > 0), f"{label}: different active features"


def saelens_saved(kind: str, normalize: str, folder: Path) -> object:
    """An SAE written by SAELens' own save code (the final inference save for training classes)."""
    common = {"d_in": D_IN, "d_sae": D_SAE, "normalize_activations": normalize, "dtype": "float32", "device": "cpu"}
    if kind == "standard":
        sae = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(**common))
    elif kind == "topk_training":  # SAELens' default TopK: rescale_acts_by_decoder_norm=True
        sae = sae_lens.TopKTrainingSAE(sae_lens.TopKTrainingSAEConfig(k=16, **common))
    elif kind == "topk_rescaled":  # the flag on an inference SAE whose decoder rows are not unit norm
        sae = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(k=16, rescale_acts_by_decoder_norm=True, **common))
    elif kind == "jumprelu":
        sae = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(**common))
    else:
        sae = sae_lens.BatchTopKTrainingSAE(sae_lens.BatchTopKTrainingSAEConfig(k=16, **common))
    perturb(sae, seed=hash(kind) % 1000)
    if kind == "batchtopk_training":
        sae.topk_threshold.fill_(0.05)  # type: ignore[attr-defined]  # set during training
    if kind.endswith("_training"):
        sae.save_inference_model(folder)  # type: ignore[attr-defined]
    else:
        sae.save_model(folder)  # type: ignore[attr-defined]
    return sae_lens.SAE.load_from_disk(folder)


@pytest.mark.parametrize("normalize", ["none", "layer_norm", "constant_norm_rescale"])
@pytest.mark.parametrize("kind", ["standard", "topk_training", "topk_rescaled", "jumprelu", "batchtopk_training"])
def test_saelens_saves_clipsteer_loads(tmp_path: Path, kind: str, normalize: str) -> None:
    theirs = saelens_saved(kind, normalize, tmp_path / "sae")
    ours = load_any_sae(tmp_path / "sae")
    if kind == "topk_rescaled":
        norms = theirs.W_dec.detach().norm(dim=-1)  # type: ignore[attr-defined]
        assert float((norms - 1).abs().max()) > 0.1  # so the fold is exercised
    compare(ours, theirs, inputs(), f"SAELens {kind}/{normalize} → clipsteer")


@pytest.mark.parametrize("normalization", ["none", "layer_norm", "token_rescale", "constant_scale"])
@pytest.mark.parametrize("architecture", ["relu", "topk", "jumprelu", "batchtopk"])
def test_clipsteer_exports_saelens_loads(tmp_path: Path, architecture: str, normalization: str) -> None:
    config = SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=architecture, normalization=normalization,  # type: ignore[arg-type]
                       k=16 if architecture in ("topk", "batchtopk") else None, site="blocks.6.resid_post")
    ours = SparseAutoencoder(config, generator=torch.Generator().manual_seed(1)).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        ours.b_enc.normal_(0, 0.1, generator=g)
        ours.b_dec.normal_(0, 0.3, generator=g)
        if architecture == "jumprelu":
            ours.log_threshold.copy_(torch.rand(D_SAE, generator=g).mul(0.3).add(1e-3).log())
        if architecture == "batchtopk":
            ours.batch_threshold.fill_(0.05)
        if normalization == "constant_scale":
            ours.input_scale.fill_(0.5)
    export_saelens(ours, tmp_path / "export")
    theirs = sae_lens.SAE.load_from_disk(tmp_path / "export")
    assert theirs.cfg.metadata.hook_name == "blocks.6.hook_resid_post"
    compare(ours.folded(), theirs, inputs(1), f"clipsteer {architecture}/{normalization} → SAELens")
