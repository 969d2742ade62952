"""Saving/loading: clipsteer's own format, Prisma .pt checkpoints and SAELens folders.

Foreign fixtures are written in the libraries' own file layouts and field names; each loaded SAE is
checked against a hand-written reference forward pass of that library's conventions.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from clipsteer.atomic import atomic_directory
from clipsteer.sae import (
    SAEConfig,
    SAEConfigError,
    SAEFormatError,
    SparseAutoencoder,
    load_any_sae,
    load_prisma_sae,
    load_sae,
    load_saelens_sae,
    save_sae,
)
from clipsteer.sae.hook_names import UnknownSiteWarning

D_IN, D_SAE = 12, 40


def random_weights(seed: int = 0, d_in: int = D_IN, d_sae: int = D_SAE) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(d_in, d_sae, generator=g) * 0.3, "W_dec": torch.randn(d_sae, d_in, generator=g) * 0.3,
            "b_enc": torch.randn(d_sae, generator=g) * 0.1, "b_dec": torch.randn(d_in, generator=g) * 0.2}


def activations(n: int = 25, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed)) * 3 + 1


def reference_forward(x: torch.Tensor, w: dict[str, torch.Tensor], *, normalize: str, act: str, k: int | None = None,
                      apply_b_dec_to_input: bool = True, threshold: torch.Tensor | None = None) -> torch.Tensor:
    """Prisma / SAELens inference, written out from their conventions."""
    if normalize == "layer_norm":
        mu = x.mean(dim=-1, keepdim=True)
        std = (x - mu).std(dim=-1, keepdim=True)
        x_in = (x - mu) / (std + 1e-5)
    elif normalize == "constant_norm_rescale":
        coeff = math.sqrt(x.shape[-1]) / x.norm(dim=-1, keepdim=True)
        x_in = x * coeff
    else:
        x_in = x
    hidden = (x_in - w["b_dec"] * apply_b_dec_to_input) @ w["W_enc"] + w["b_enc"]
    if act == "relu":
        f = hidden.relu()
    elif act == "topk":
        assert k is not None
        top = hidden.topk(k, dim=-1)
        f = torch.zeros_like(hidden).scatter(-1, top.indices, top.values.relu())
    else:
        assert threshold is not None
        f = hidden.relu() * (hidden > threshold)
    out = f @ w["W_dec"] + w["b_dec"]
    if normalize == "layer_norm":
        return out * std + mu
    if normalize == "constant_norm_rescale":
        return out / coeff
    return out


# ----- clipsteer format --------------------------------------------------------------------------------------

@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk", "jumprelu"])
@pytest.mark.parametrize("normalization", ["none", "layer_norm", "constant_scale"])
def test_save_load_round_trip(tmp_path: Path, architecture: str, normalization: str) -> None:
    config = SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=architecture, normalization=normalization,  # type: ignore[arg-type]
                       k=5 if architecture in ("topk", "batchtopk") else None, site="blocks.2.resid_post", tokens="cls")
    sae = SparseAutoencoder(config, generator=torch.Generator().manual_seed(1)).eval()
    with torch.no_grad():
        sae.b_enc.fill_(0.2)
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(2))
        if architecture == "batchtopk":
            sae.batch_threshold.fill_(0.25)
        if architecture == "jumprelu":
            sae.log_threshold.normal_(-2, 0.5, generator=torch.Generator().manual_seed(3))
        if normalization == "constant_scale":
            sae.input_scale.fill_(0.37)
    save_sae(sae, tmp_path / "sae")
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == ["config.json", "sae.safetensors"]
    loaded = load_sae(tmp_path / "sae")
    assert not loaded.training
    expected_norm = "none" if normalization == "constant_scale" else normalization
    assert loaded.config.normalization == expected_norm and loaded.config.site == "blocks.2.resid_post"
    x = activations()
    torch.testing.assert_close(loaded(x).reconstruction, sae(x).reconstruction, atol=1e-5, rtol=1e-5)
    assert load_any_sae(tmp_path / "sae").config == loaded.config


def test_saving_over_an_sae_replaces_it_and_a_failed_write_keeps_the_old_one(tmp_path: Path) -> None:
    first = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE), generator=torch.Generator().manual_seed(1))
    second = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE), generator=torch.Generator().manual_seed(2))
    save_sae(first, tmp_path / "sae")
    save_sae(second, tmp_path / "sae")
    torch.testing.assert_close(load_sae(tmp_path / "sae").W_dec, second.W_dec)
    with pytest.raises(RuntimeError, match="disk full"), atomic_directory(tmp_path / "sae") as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("disk full")
    torch.testing.assert_close(load_sae(tmp_path / "sae").W_dec, second.W_dec)
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]  # no temporary leftovers


def test_own_format_errors_name_the_problem(tmp_path: Path) -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE))
    save_sae(sae, tmp_path / "a")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    del config["d_sae"]
    (tmp_path / "a" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SAEConfigError, match=r"config.json: missing required field\(s\) \['d_sae'\]"):
        load_sae(tmp_path / "a")
    save_sae(sae, tmp_path / "b")
    tensors = {k: v for k, v in random_weights(d_in=D_IN + 1).items()}
    save_file(tensors, tmp_path / "b" / "sae.safetensors")
    with pytest.raises(SAEFormatError, match=r"W_enc has shape \(13, 40\), expected \(12, 40\)"):
        load_sae(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_sae(tmp_path / "missing")


# ----- Prisma ------------------------------------------------------------------------------------------------------

def prisma_config(**overrides: object) -> dict:
    """A config.json as Prisma's VisionModelSAERunnerConfig.save_config writes it (subset of its fields)."""
    config = {
        "model_class_name": "HookedViT", "model_name": "open-clip:laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K",
        "hook_point_layer": 11, "layer_subtype": "hook_resid_post", "hook_point_head_index": None, "context_size": 50,
        "use_cached_activations": False, "use_patches_only": False, "d_in": D_IN, "activation_fn_str": "relu",
        "activation_fn_kwargs": {}, "cls_token_only": False, "max_grad_norm": 1.0,
        "initialization_method": "encoder_transpose_decoder", "normalize_activations": "layer_norm",
        "n_batches_in_buffer": 20, "store_batch_size": 32, "num_epochs": 2, "total_training_images": 2600058,
        "device": {"__type__": "torch.device", "value": "cuda"},
        "dtype": {"__type__": "torch.dtype", "value": "torch.float32"}, "seed": 42, "architecture": "standard",
        "b_dec_init_method": "geometric_median", "expansion_factor": D_SAE // D_IN + 1, "d_sae": D_SAE,
        "l1_coefficient": 0.0001, "lr": 0.0004, "lr_scheduler_name": "cosineannealingwarmup", "lr_warm_up_steps": 200,
        "train_batch_size": 4096, "use_ghost_grads": True, "feature_sampling_window": 1000,
        "dead_feature_window": 5000, "dead_feature_threshold": 1e-08,
    }
    config.update(overrides)
    return config


def write_prisma(folder: Path, weights: dict[str, torch.Tensor], **overrides: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(prisma_config(**overrides), indent=4))
    torch.save(weights, folder / "n_images_2600058.pt")
    return folder / "n_images_2600058.pt"


@pytest.mark.parametrize(("normalize", "act", "k"), [("layer_norm", "relu", None), ("layer_norm", "topk", 6),
                                                     ("none", "relu", None), ("constant_norm_rescale", "topk", 3)])
def test_prisma_checkpoint_computes_prismas_forward(tmp_path: Path, normalize: str, act: str, k: int | None) -> None:
    weights = random_weights()
    overrides: dict = {"normalize_activations": normalize, "activation_fn_str": act}
    if k is not None:
        overrides["activation_fn_kwargs"] = {"k": k}
    path = write_prisma(tmp_path / "prisma", weights, **overrides)
    sae = load_prisma_sae(path)
    x = activations()
    expected = reference_forward(x, weights, normalize=normalize, act=act, k=k)
    torch.testing.assert_close(sae(x).reconstruction, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sae.decode(sae.encode(x), x=x), expected, atol=1e-4, rtol=1e-4)
    assert sae.config.site == "blocks.11.resid_post" and sae.config.tokens == "all"
    assert sae.config.source_format == "prisma" and sae.config.architecture == act
    assert load_any_sae(tmp_path / "prisma").config == sae.config  # folder detection


def test_prisma_token_selection_and_hook_point_field(tmp_path: Path) -> None:
    path = write_prisma(tmp_path / "p", random_weights(), cls_token_only=True, hook_point="blocks.7.hook_mlp_out")
    sae = load_prisma_sae(path)
    assert sae.config.tokens == "cls" and sae.config.site == "blocks.7.mlp_out"
    path = write_prisma(tmp_path / "q", random_weights(), use_patches_only=True, d_sae=None)  # d_sae via expansion
    with pytest.raises(SAEFormatError, match=r"W_enc has shape \(12, 40\), expected \(12, 48\)"):
        load_prisma_sae(path)


class PwnedOnLoad:
    """Unpickling this would create a file: weights_only must refuse before that can happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_prisma_pickled_objects_are_refused_never_executed(tmp_path: Path) -> None:
    folder = tmp_path / "evil"
    write_prisma(folder, random_weights())
    marker = tmp_path / "pwned"
    torch.save({"cfg": PwnedOnLoad(marker), "state_dict": random_weights()}, folder / "n_images_2600058.pt")
    with pytest.raises(SAEFormatError, match=r"refused to load.*never unpickles"):
        load_prisma_sae(folder / "n_images_2600058.pt")
    assert not marker.exists()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"d_in": None}, "missing required field 'd_in'"),
    ({"d_sae": None, "expansion_factor": None}, "missing 'd_sae' and 'expansion_factor'"),
    ({"activation_fn_str": "topk"}, "needs an integer k"),
    ({"activation_fn_str": "tanh-relu"}, "activation_fn_str 'tanh-relu' is not supported"),
    ({"architecture": "gated"}, "architecture 'gated' is not supported"),
    ({"normalize_activations": "batch_norm"}, "normalize_activations 'batch_norm' is not supported"),
])
def test_prisma_config_problems_are_explained(tmp_path: Path, overrides: dict, message: str) -> None:
    path = write_prisma(tmp_path / "p", random_weights(), **overrides)
    if overrides.get("d_in", 1) is None:
        config = json.loads((tmp_path / "p" / "config.json").read_text())
        del config["d_in"]
        (tmp_path / "p" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SAEConfigError, match=message) as info:
        load_prisma_sae(path)
    assert "config.json" in str(info.value)


def test_prisma_extra_tensors_and_missing_config(tmp_path: Path) -> None:
    path = write_prisma(tmp_path / "p", {**random_weights(), "b_gate": torch.zeros(D_SAE)})
    with pytest.raises(SAEFormatError, match=r"unexpected tensors \['b_gate'\]"):
        load_prisma_sae(path)
    (tmp_path / "p" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="needs its config.json"):
        load_prisma_sae(path)


# ----- SAELens -------------------------------------------------------------------------------------------------------

def write_saelens(folder: Path, weights: dict[str, torch.Tensor], cfg: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
            "normalize_activations": "none", "reshape_activations": "none",
            "metadata": {"model_name": "tiny-clip", "hook_name": "blocks.4.hook_resid_pre", "sae_lens_version": "6.18.0"}}
    base.update(cfg)
    (folder / "cfg.json").write_text(json.dumps(base))
    save_file(weights, folder / "sae_weights.safetensors")
    return folder


@pytest.mark.parametrize(("cfg", "act", "k"), [
    ({"architecture": "standard"}, "relu", None),
    ({"architecture": "standard", "apply_b_dec_to_input": False}, "relu", None),
    ({"architecture": "topk", "k": 4, "normalize_activations": "layer_norm"}, "topk", 4),
    ({"architecture": "jumprelu", "apply_b_dec_to_input": False}, "jumprelu", None),
    ({"architecture": "jumprelu", "normalize_activations": "constant_norm_rescale"}, "jumprelu", None),
    # pre-v6 layout: TopK as a "standard" SAE with an activation function string, hook at the top level
    ({"architecture": "standard", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 7},
      "hook_name": "blocks.1.hook_mlp_out", "metadata": None}, "topk", 7),
])
def test_saelens_sae_computes_saelens_forward(tmp_path: Path, cfg: dict, act: str, k: int | None) -> None:
    weights = random_weights(seed=3)
    threshold = None
    if act == "jumprelu":
        threshold = torch.rand(D_SAE, generator=torch.Generator().manual_seed(4)) * 0.3
        threshold[:3] = 0.0  # SAELens allows zero thresholds (plain ReLU there)
        weights["threshold"] = threshold
    folder = write_saelens(tmp_path / "sl", weights, cfg)
    sae = load_saelens_sae(folder)
    x = activations()
    expected = reference_forward(x, weights, normalize=cfg.get("normalize_activations", "none"), act=act, k=k,
                                 apply_b_dec_to_input=cfg.get("apply_b_dec_to_input", True), threshold=threshold)
    torch.testing.assert_close(sae(x).reconstruction, expected, atol=1e-4, rtol=1e-4)
    assert sae.config.architecture == act and sae.config.source_format == "saelens"
    expected_site = "blocks.1.mlp_out" if "hook_name" in cfg else "blocks.4.resid_pre"
    assert sae.config.site == expected_site
    assert load_any_sae(folder).config == sae.config


@pytest.mark.parametrize(("cfg", "message"), [
    ({"architecture": "gated"}, "architecture 'gated' is not supported"),
    ({"architecture": "topk"}, "needs an integer 'k'"),
    ({"architecture": "jumprelu", "rescale_acts_by_decoder_norm": True}, "only defined for topk SAEs"),
    ({"architecture": "standard", "metadata": {"hook_name": "blocks.2.attn.hook_z", "hook_head_index": 3}},
     "hook_head_index=3"),
    ({"architecture": "standard", "normalize_activations": "whiten"}, "normalize_activations 'whiten'"),
    ({"architecture": "standard", "reshape_activations": "hook_z"}, "reshape_activations='hook_z'"),
])
def test_saelens_config_problems_are_explained(tmp_path: Path, cfg: dict, message: str) -> None:
    folder = write_saelens(tmp_path / "sl", random_weights(), cfg)
    with pytest.raises(SAEConfigError, match=message):
        load_saelens_sae(folder)


def test_saelens_rescale_acts_by_decoder_norm_is_folded_exactly(tmp_path: Path) -> None:
    """SAELens' TopK with the flag: f = TopK(pre·n), x̂ = (f/n)·W_dec + b_dec, n_j = ‖W_dec_j‖ (rows not unit)."""
    weights = random_weights(seed=7)
    folder = write_saelens(tmp_path / "sl", weights, {"architecture": "topk", "k": 5,
                                                      "rescale_acts_by_decoder_norm": True})
    sae = load_saelens_sae(folder)
    x = activations()
    n = weights["W_dec"].norm(dim=-1)
    pre = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
    top = (pre * n).topk(5, dim=-1)
    codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    expected = (codes / n) @ weights["W_dec"] + weights["b_dec"]
    torch.testing.assert_close(sae.encode(x), codes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae(x).reconstruction, expected, atol=1e-5, rtol=1e-5)
    plain = load_saelens_sae(write_saelens(tmp_path / "plain", weights, {"architecture": "topk", "k": 5}))
    assert not torch.allclose(plain(x).reconstruction, expected, atol=1e-3)  # the flag matters on these weights


def test_saelens_hook_that_is_no_site_warns_at_load(tmp_path: Path) -> None:
    folder = write_saelens(tmp_path / "sl", random_weights(), {
        "architecture": "standard", "metadata": {"hook_name": "blocks.8.ln2.hook_normalized"}})
    with pytest.warns(UnknownSiteWarning, match=r"cfg.json: hook 'blocks.8.ln2.hook_normalized' is not a clipsteer"):
        sae = load_saelens_sae(folder)
    assert sae.config.site == "blocks.8.ln2.hook_normalized"


def test_saelens_missing_fields_and_tensors(tmp_path: Path) -> None:
    folder = write_saelens(tmp_path / "sl", random_weights(), {"architecture": "standard"})
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["d_sae"]
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SAEConfigError, match=r"cfg.json: missing required field\(s\) \['d_sae'\]"):
        load_saelens_sae(folder)
    folder = write_saelens(tmp_path / "j", random_weights(), {"architecture": "jumprelu"})
    with pytest.raises(SAEFormatError, match=r"a SAELens jumprelu SAE has \['W_dec', 'W_enc', 'b_dec', 'b_enc', 'threshold'\]"):
        load_saelens_sae(folder)


def test_load_any_sae_explains_unknown_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no SAE found"):
        load_any_sae(tmp_path / "empty")
