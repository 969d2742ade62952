import json
import math
from pathlib import Path

import pytest
import torch

from clipsteer.errors import ConfigError
from clipsteer.models.backbone import Backbone
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.io import save_sae
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.steer.commands import steerability
from clipsteer.steer.configs import SteerabilityConfig
from clipsteer.steer.results import ConceptMatches, SteerabilitySummary, read_feature_rows
from clipsteer.steer.vocabulary import read_vocabulary_file
from clipsteer.world.concepts import phrase_vocabulary


def test_steerability_command_scores_every_basis_with_constants_by_meaning(world_geometry_model_dir: Path,
                                                                           tmp_path: Path) -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, site="blocks.2.resid_post"),
                            generator=torch.Generator().manual_seed(0))
    save_sae(sae, tmp_path / "sae")
    out = tmp_path / "steer"
    summary = steerability(SteerabilityConfig(out=out, sae=tmp_path / "sae", model=str(world_geometry_model_dir),
                                              images="world:zero_shot/test", n_images=8, max_features=10,
                                              curve_features=(0, 3), curve_alphas=(0.0, 150.0),
                                              alpha_sweep=(0.0, 150.0), random_vision=True,
                                              match_images="world:pretraining/test", match_n_images=60))
    backbone = Backbone.from_pretrained(world_geometry_model_dir)
    # constants by meaning: α = 150/√767 · √(d − 1), τ = the model's logit scale, both recorded
    assert summary.alpha == pytest.approx(150 * math.sqrt(31 / 767))
    assert summary.alpha_relative == pytest.approx(150 / math.sqrt(767))
    assert summary.temperature == pytest.approx(backbone.logit_scale) == pytest.approx(summary.logit_scale)
    # the image source's own vocabulary (the world's caption phrases) is the default, written beside the rows
    assert summary.vocabulary_size == len(phrase_vocabulary())
    assert summary.vocabulary == "images:world:zero_shot/test"
    written = read_vocabulary_file(out / "vocabulary.txt")
    assert written.concepts == tuple(p for p, _ in phrase_vocabulary())
    assert written.factors == tuple(f for _, f in phrase_vocabulary())
    roles = {name: b.role for name, b in summary.bases.items()}
    assert roles == {"sae": "result", "null": "null", "neurons": "baseline", "neurons_ln": "baseline",
                     "random_vision_sae": "diagnostic", "random_vision_neurons": "diagnostic"}
    matches = ConceptMatches.read(out)
    for basis, n in [("sae", 10), ("null", 10), ("neurons", 32), ("neurons_ln", 32), ("random_vision_sae", 10),
                     ("random_vision_neurons", 32)]:
        rows = read_feature_rows(out, basis)
        assert len(rows) == n == summary.bases[basis].n_features
        assert all(r.steerable == (r.steerability > 0.10) for r in rows)
        assert sum(r.steerable for r in rows) == summary.bases[basis].n_steerable
        assert (out / f"features_{basis}.csv").read_text().startswith("feature,steerability,power,top_concept")
        match = summary.bases[basis].concept_match
        assert (match is None) == (summary.bases[basis].role == "diagnostic")
        if match is not None:  # the summary's rate is the per-unit file's
            units = matches.units[basis]
            assert match.n_units == summary.bases[basis].n_steerable == len(units)
            assert match.n_matched == sum(bool(u.matches) for u in units)
            assert all(set(u.matches) <= set(u.detects) for u in units)
    # the α sweep is in the paper's units: 150 there is this run's α
    sweep = summary.alpha_sweep["neurons"]
    assert list(sweep) == ["0", f"{summary.alpha:g}"]
    assert sweep[f"{summary.alpha:g}"] == summary.bases["neurons"].fraction_steerable
    curves = summary.strength_curves
    assert set(curves) == {"0", "3"} and curves["0"].paper_alpha == (0.0, 150.0)
    assert curves["0"].alpha[1] == pytest.approx(summary.alpha)
    row0 = next(r for r in read_feature_rows(out, "sae") if r.feature == 0)  # the curve at α meets the table
    assert curves["0"].steerability[1] == pytest.approx(row0.steerability, rel=1e-5)
    assert (out / "strength_curves.png").stat().st_size > 0
    assert SteerabilitySummary.read(out) == summary
    assert json.loads((out / "summary.json").read_text())["site"] == "blocks.2.resid_post"


def test_literal_paper_constants_and_a_word_file(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("water\nland\nred\n")
    summary = steerability(SteerabilityConfig(out=tmp_path / "s", model=str(world_geometry_model_dir),
                                              site="blocks.1.resid_post", n_images=4, alpha=150.0,
                                              temperature=100.0, vocabulary=str(words), bases=("neurons", "null")))
    assert (summary.alpha, summary.temperature, summary.vocabulary_size) == (150.0, 100.0, 3)
    assert summary.alpha_relative == pytest.approx(150 / math.sqrt(31))
    assert set(summary.bases) == {"neurons", "null"}
    assert summary.bases["null"].n_features == 32  # without an SAE: d_model random directions
    assert all(b.concept_match is None for b in summary.bases.values())  # a plain word list names no factors
    assert not ConceptMatches.path(tmp_path / "s").exists()


def test_a_null_that_is_itself_steerable_is_warned_about(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("water\nland\n")
    # |V| = 2 at a sharp temperature and a huge clamp: anything flips the reading
    summary = steerability(SteerabilityConfig(out=tmp_path / "s", model=str(world_geometry_model_dir),
                                              site="blocks.2.resid_post", n_images=4, alpha=1000.0,
                                              temperature=1000.0, vocabulary=str(words), bases=("null",)))
    assert summary.bases["null"].fraction_steerable >= 0.5 and summary.null_fraction == summary.bases["null"].fraction_steerable
    assert any("not tell learnt directions from random" in w for w in summary.warnings)


def test_steerability_needs_a_vision_site(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give --site"):
        steerability(SteerabilityConfig(out=tmp_path / "a", model=str(world_geometry_model_dir), n_images=4))
    with pytest.raises(ConfigError, match="text-tower site"):
        steerability(SteerabilityConfig(out=tmp_path / "b", model=str(world_geometry_model_dir), n_images=4,
                                        site="text.blocks.0.resid_post"))


def test_concept_matcher_reads_world_labels_for_steerable_units(world_geometry_model_dir: Path) -> None:
    from clipsteer.steer.commands import ConceptMatcher
    from clipsteer.steer.dictionary import DirectionSet
    from clipsteer.steer.results import FeatureRow
    from clipsteer.steer.vocabulary import ConceptVocabulary

    backbone = Backbone.from_pretrained(world_geometry_model_dir)
    pairs = phrase_vocabulary()
    vocabulary = ConceptVocabulary(tuple(p for p, _ in pairs), tuple(f for _, f in pairs))
    matcher = ConceptMatcher.create(SteerabilityConfig(match_n_images=80), vocabulary, "blocks.0.resid_post")
    assert matcher is not None
    rows = [FeatureRow(j, 0.5, 0.5, pairs[j][0], steerable=j != 2) for j in range(5)]
    units = matcher.units(backbone, DirectionSet.neurons(32), rows)
    assert [u.feature for u in units] == [0, 1, 3, 4]
    match = matcher.summary(units)
    assert match.n_units == 4 and match.n_matched == sum(bool(u.matches) for u in units)
    assert 0.0 <= match.shuffled_rate <= 1.0
