"""`clipsteer export`: SAELens and Prisma folders that load back to the same function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clipsteer.cli import run_command
from clipsteer.sae import SAEConfig, SparseAutoencoder, load_any_sae, save_sae
from clipsteer.sae.export import ExportError, export_prisma, export_saelens

D_IN, D_SAE = 12, 48


def trained_looking_sae(architecture: str, normalization: str, tokens: str = "all", seed: int = 0) -> SparseAutoencoder:
    config = SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=architecture, normalization=normalization,  # type: ignore[arg-type]
                       k=6 if architecture in ("topk", "batchtopk") else None, site="blocks.3.resid_post",
                       tokens=tokens, model="tiny-clip")  # type: ignore[arg-type]
    sae = SparseAutoencoder(config, generator=torch.Generator().manual_seed(seed)).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.2, generator=g)
        sae.b_dec.normal_(0, 0.5, generator=g)
        if architecture == "jumprelu":
            sae.log_threshold.normal_(-1.5, 0.3, generator=g)
        if architecture == "batchtopk":
            sae.batch_threshold.fill_(0.1)
        if normalization == "constant_scale":
            sae.input_scale.fill_(0.4)
    return sae


def inputs() -> torch.Tensor:
    return torch.randn(64, D_IN, generator=torch.Generator().manual_seed(9)) * 2 + 0.5


@pytest.mark.parametrize("architecture", ["relu", "topk", "jumprelu", "batchtopk"])
@pytest.mark.parametrize("normalization", ["none", "layer_norm", "token_rescale", "constant_scale"])
def test_saelens_export_round_trips(tmp_path: Path, architecture: str, normalization: str) -> None:
    sae = trained_looking_sae(architecture, normalization)
    folder = export_saelens(sae, tmp_path / "sl")
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.3.hook_resid_post"
    loaded = load_any_sae(folder)
    x = inputs()
    # constant_scale is folded on export, as save_sae does: codes come out in raw units (f / c)
    torch.testing.assert_close(loaded.encode(x), sae.folded().encode(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loaded(x).reconstruction, sae(x).reconstruction, atol=1e-5, rtol=1e-5)
    assert loaded.config.site == "blocks.3.resid_post" and loaded.config.source_format == "saelens"


@pytest.mark.parametrize("architecture", ["relu", "topk"])
@pytest.mark.parametrize(("normalization", "tokens"), [("layer_norm", "all"), ("token_rescale", "cls"),
                                                       ("none", "patches"), ("constant_scale", "all")])
def test_prisma_export_round_trips(tmp_path: Path, architecture: str, normalization: str, tokens: str) -> None:
    sae = trained_looking_sae(architecture, normalization, tokens)
    folder = export_prisma(sae, tmp_path / "prisma")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.pt"]
    data = torch.load(folder / "weights.pt", weights_only=True)  # a plain state dict: nothing pickled
    assert sorted(data) == ["W_dec", "W_enc", "b_dec", "b_enc"]
    loaded = load_any_sae(folder)
    x = inputs()
    # constant_scale is folded on export, as save_sae does: codes come out in raw units (f / c)
    torch.testing.assert_close(loaded.encode(x), sae.folded().encode(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loaded(x).reconstruction, sae(x).reconstruction, atol=1e-5, rtol=1e-5)
    assert (loaded.config.site, loaded.config.tokens, loaded.config.model) == ("blocks.3.resid_post", tokens, "tiny-clip")


def test_prisma_refuses_what_it_cannot_express(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="jumprelu SAE has no ViT-Prisma equivalent"):
        export_prisma(trained_looking_sae("jumprelu", "none"), tmp_path / "a")
    odd = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=50, site="blocks.1.resid_post"))
    with pytest.raises(ExportError, match="d_sae=50 is not a multiple of d_in=12"):
        export_prisma(odd, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_export_command(tmp_path: Path) -> None:
    save_sae(trained_looking_sae("topk", "layer_norm"), tmp_path / "sae")
    folder = run_command(["export", str(tmp_path / "sae"), "--format", "prisma"])
    assert folder == tmp_path / "sae_prisma" and (folder / "weights.pt").is_file()
    folder = run_command(["export", str(tmp_path / "sae_prisma"), "--out", str(tmp_path / "again")])
    assert json.loads((folder / "cfg.json").read_text())["architecture"] == "topk"
