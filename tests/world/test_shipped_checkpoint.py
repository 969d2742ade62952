"""The shipped toy CLIPs (`clipsteer:toy_clip`, the default, and every other checkpoint in the package's assets):
each loads offline through the project's Backbone and matches the world code it was trained on."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from clipsteer.models.names import ASSETS
from clipsteer.world.fingerprint import world_fingerprint
from clipsteer.world.paths import SHIPPED_CHECKPOINT
from clipsteer.world.toy_clip import WORLD_FILE, world_config_of
from clipsteer.world.version import WORLD_VERSION

pytestmark = pytest.mark.skipif(not (SHIPPED_CHECKPOINT / WORLD_FILE).is_file(), reason="no shipped checkpoint")
SHIPPED = sorted(p for p in ASSETS.iterdir() if (p / WORLD_FILE).is_file()) if ASSETS.is_dir() else []
each_shipped = pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])


@each_shipped
def test_world_code_still_matches_the_shipped_checkpoint(folder):
    """Fails when the generator changed in a way that invalidates the shipped weights: retrain
    (`clipsteer world train-clip`) and ship the new checkpoint, bumping WORLD_VERSION."""
    info = json.loads((folder / WORLD_FILE).read_text())
    assert info["world_version"] == WORLD_VERSION, "the world version changed since the checkpoint was trained"
    assert info["fingerprint"] == world_fingerprint(world_config_of(folder)), (
        "rendered samples differ from those the shipped toy CLIP was trained on")


@each_shipped
def test_shipped_checkpoint_is_small_and_complete(folder):
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", WORLD_FILE):
        assert name in files, name
    assert sum(files.values()) <= 15 * 2**20


@each_shipped
def test_shipped_checkpoint_loads_with_backbone_and_tokenizer(folder):
    from clipsteer.models.backbone import Backbone

    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok(["a photo of a star"], padding="max_length", max_length=16)["input_ids"][0]
    eos = tok.eos_token_id
    assert eos != 2 and ids[0] == tok.bos_token_id and ids[6] == eos and set(ids[7:]) == {tok.pad_token_id}
    backbone = Backbone.from_pretrained(folder)
    assert backbone.model.config.text_config.eos_token_id == eos
    assert backbone.grid == 8 and backbone.image_size == 64 and 4 <= backbone.n_layers <= 6
    emb = backbone.encode_text(["a photo of a star", "a photo of a moon"])
    assert emb.shape[0] == 2 and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-4)
