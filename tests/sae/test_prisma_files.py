"""ViT-Prisma trainer output (pickled config + sparsity logs) loads without running any pickled code."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from prisma_files import prisma_config_class, prisma_fields, write_prisma_checkpoint
from test_io import activations, random_weights, reference_forward

from clipsteer.sae import SAEConfigError, SAEFormatError, load_any_sae, load_prisma_sae
from clipsteer.sae.hook_names import UnknownSiteWarning
from clipsteer.sae.prisma import read_prisma_feature_sparsity


def trainer_folder(tmp_path: Path, **overrides: object) -> tuple[Path, dict[str, torch.Tensor]]:
    """Two checkpoints, as a run with n_checkpoints=2 leaves them; the newest has different weights."""
    folder = tmp_path / "checkpoints" / "run"
    write_prisma_checkpoint(folder, random_weights(seed=1, d_sae=48), n_images=1300029, **overrides)
    newest = random_weights(seed=2, d_sae=48)
    write_prisma_checkpoint(folder, newest, n_images=2600058, feature_sparsity=torch.linspace(0, 1, 48), **overrides)
    return folder, newest


@pytest.mark.parametrize(("act", "k"), [("relu", None), ("topk", 5)])
def test_trainer_folder_loads_the_newest_checkpoint(tmp_path: Path, act: str, k: int | None) -> None:
    kwargs = {"k": k} if k else {}
    folder, newest = trainer_folder(tmp_path, activation_fn_str=act, activation_fn_kwargs=kwargs)
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "n_images_1300029.pt", "n_images_1300029_log_feature_sparsity.pt",
        "n_images_2600058.pt", "n_images_2600058_log_feature_sparsity.pt"]
    with pytest.warns(UserWarning, match="2 Prisma checkpoints; loading the newest, n_images_2600058.pt"):
        sae = load_prisma_sae(folder)
    x = activations()
    expected = reference_forward(x, newest, normalize="layer_norm", act=act, k=k)
    torch.testing.assert_close(sae(x).reconstruction, expected, atol=1e-4, rtol=1e-4)
    assert sae.config.d_sae == 48 and sae.config.site == "blocks.11.resid_post" and sae.config.architecture == act
    with pytest.warns(UserWarning, match="loading the newest"):
        assert load_any_sae(folder).config == sae.config


def test_pickled_config_is_read_as_data(tmp_path: Path) -> None:
    """Without config.json the pickled config alone describes the SAE (as Prisma's own loader uses it)."""
    folder, newest = trainer_folder(tmp_path, cls_token_only=True, layer_subtype="hook_mlp_out", hook_point_layer=7)
    (folder / "config.json").unlink()
    sae = load_prisma_sae(folder / "n_images_2600058.pt")
    assert sae.config.tokens == "cls" and sae.config.site == "blocks.7.mlp_out"
    torch.testing.assert_close(sae.W_enc, newest["W_enc"])
    assert "vit_prisma" not in sys_modules_names()  # nothing of ViT-Prisma was imported to read it


def sys_modules_names() -> str:
    import sys

    return " ".join(sys.modules)


def test_feature_sparsity_log_is_read_as_feature_statistics(tmp_path: Path) -> None:
    folder, _ = trainer_folder(tmp_path)
    log_sparsity = read_prisma_feature_sparsity(folder / "n_images_2600058.pt")
    torch.testing.assert_close(log_sparsity, torch.log10(torch.linspace(0, 1, 48) + 1e-10))


def test_single_head_and_non_site_hooks(tmp_path: Path) -> None:
    folder, _ = trainer_folder(tmp_path, hook_point_head_index=3)
    with pytest.raises(SAEConfigError, match="hook_point_head_index=3"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_prisma_sae(folder)
    shutil.rmtree(folder)
    folder, _ = trainer_folder(tmp_path, layer_subtype="ln2.hook_normalized")  # Prisma's default hook
    with pytest.warns(UnknownSiteWarning, match=r"hook 'blocks.11.ln2.hook_normalized' is not a clipsteer site"):
        sae = load_prisma_sae(folder / "n_images_2600058.pt")
    assert sae.config.site == "blocks.11.ln2.hook_normalized"


class RunsOnLoad:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["cfg", "inside_cfg", "state_dict", "sparsity"])
def test_payloads_never_run(tmp_path: Path, where: str) -> None:
    """A __reduce__ payload anywhere in a Prisma file is refused before it can run.

    The same bytes loaded with torch.load(weights_only=False) do run it: the test would fail if the
    loader unpickled."""
    folder, weights = trainer_folder(tmp_path)
    marker = tmp_path / "payload-ran"
    evil = RunsOnLoad(marker)
    target = folder / "n_images_2600058.pt"
    if where == "cfg":
        torch.save({"cfg": evil, "state_dict": weights}, target)
    elif where == "inside_cfg":
        with prisma_config_class() as cls:
            torch.save({"cfg": cls(**prisma_fields(model_path=evil)), "state_dict": weights}, target)
    elif where == "state_dict":
        torch.save({**weights, "W_enc": evil}, target)
    else:
        target = folder / "n_images_2600058_log_feature_sparsity.pt"
        torch.save(evil, target)
    with pytest.raises(SAEFormatError) as info:
        if where == "sparsity":
            read_prisma_feature_sparsity(folder / "n_images_2600058.pt")
        else:
            load_prisma_sae(target)
    message = str(info.value)
    assert "refused to load" in message and "posix.system" in message and "\x1b" not in message
    assert not marker.exists()
    with prisma_config_class():
        torch.load(target, weights_only=False)  # the control: the payload is live
    assert marker.exists()
