"""`world:` datasets render the world of the model they feed (`ModelMatched`), so that a toy CLIP trained with
the habitat knobs is harvested, debiased and attacked on its own world's images."""

import numpy as np
import pytest

from clipsteer.data.labelled import open_labelled
from clipsteer.data.protocol import ModelMatched
from clipsteer.data.resolve import open_dataset
from clipsteer.models.backbone import Backbone
from clipsteer.models.names import builtin_dir
from clipsteer.world.config import WorldConfig
from clipsteer.world.dataset import WorldDataset

HABITAT = builtin_dir("clipsteer:toy_clip_habitat")
DEFAULT = builtin_dir("clipsteer:toy_clip")


def test_world_specs_take_the_world_of_the_model_they_feed():
    plain = open_dataset("world:typographic/test/clean:32")
    matched = open_dataset("world:typographic/test/clean:32", model_dir=HABITAT)
    assert isinstance(plain, ModelMatched)
    assert plain.world == WorldConfig()
    assert matched.world.habitat_strength == 0.8 and matched.world.p_caption_background_type == 0.5
    assert matched.fingerprint() != plain.fingerprint()  # a store harvested from one never resumes from the other
    # the habitat world moves some task shapes onto their own background type: some images differ
    differ = [not np.array_equal(np.asarray(plain.load(i)), np.asarray(matched.load(i))) for i in range(32)]
    assert 0 < sum(differ) < 32


def test_the_default_model_and_models_without_a_world_leave_the_dataset_as_named(tmp_path):
    plain = open_dataset("world:train:16")
    assert open_dataset("world:train:16", model_dir=DEFAULT).fingerprint() == plain.fingerprint()
    assert open_dataset("world:train:16", model_dir=tmp_path).fingerprint() == plain.fingerprint()


def test_labelled_world_tasks_are_matched_too():
    matched = open_labelled("world:background:8", "val", model_dir=HABITAT)
    plain = open_labelled("world:background:8", "val")
    assert matched.images.world.habitat_strength == 0.8
    assert matched.label_names() == plain.label_names()
    np.testing.assert_array_equal(matched.labels()["label"], plain.labels()["label"])


@pytest.mark.parametrize("name", ["clipsteer:toy_clip", "clipsteer:toy_clip_habitat"])
def test_a_loaded_backbone_knows_its_checkpoint_folder(name):
    assert Backbone.from_pretrained(name).model_dir == builtin_dir(name)


def test_world_dataset_for_model_keeps_task_split_and_size():
    ds = WorldDataset(task="zero_shot", split="val", n=10).for_model(HABITAT)
    assert (ds.task, ds.split, ds.n) == ("zero_shot", "val", 10)


@pytest.mark.parametrize("match", [True, False])
def test_harvest_renders_the_models_world_unless_told_not_to_and_report_finds_the_images(tmp_path, match):
    from clipsteer.activations.configs import HarvestConfig
    from clipsteer.activations.harvest import harvest
    from clipsteer.activations.store import ActivationStore
    from clipsteer.report.commands import open_store_dataset

    stores = harvest(HarvestConfig(sites=("blocks.0.resid_post",), out=tmp_path, model="clipsteer:toy_clip_habitat",
                                   dataset="world:train:4", match_dataset_to_model=match, workers=0))
    spec = ActivationStore.open(stores["blocks.0.resid_post"]).meta.spec
    matched = open_dataset("world:train:4", model_dir=HABITAT)
    expected = matched if match else open_dataset("world:train:4")
    assert spec.dataset_fingerprint == expected.fingerprint()
    found = open_store_dataset(spec.dataset, spec.dataset_fingerprint, None, tmp_path, spec.model_name)
    assert found.fingerprint() == spec.dataset_fingerprint
