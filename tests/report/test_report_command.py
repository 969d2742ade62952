"""`clipsteer report` on a run from a random-weight CLIP folder and an image folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from clipsteer.activations.loaders import open_ordered
from clipsteer.report.sources import discover
from clipsteer.sae.loading import load_any_sae


def test_report_builds_from_a_random_clip_and_an_image_folder(random_clip_run: Path, random_clip_report: Path) -> None:
    index = random_clip_report
    assert index == random_clip_run / "report" / "index.html"
    text = index.read_text()
    cards = json.loads((index.parent / "cards.json").read_text())
    assert len(cards) == 10
    # The suppressed features and the one with a strength curve come first, then the scored ones by
    # decreasing steerability.
    assert [c["feature"] for c in cards[:3]] == [5, 77, 3]
    scored = [c["steerability"] for c in cards[3:]]
    assert None not in scored and scored == sorted(scored, reverse=True) and len(scored) == 7
    # Every picture the pages reference exists in the report folder.
    pages = [index, *sorted((index.parent / "features").glob("*.html"))]
    assert len(pages) == 11
    for page in pages:
        for src in re.findall(r"<img src='([^']+)'|<img src=\"([^\"]+)\"", page.read_text()):
            src = src[0] or src[1]
            assert (page.parent / src).is_file(), f"{page.name} references missing {src}"
    # The quality numbers are the evaluation's (its EvalResult, found beside the SAE), and say so.
    (entry,) = discover(random_clip_run)
    assert entry.quality is not None and f"{random_clip_run / 'eval' / 'eval.json'} (24 images of" in text
    assert "Debiasing: debias/background" in text and "features/layer-1-5.html" in text
    assert text.count("class=card ") == 10


def test_cards_hold_the_brute_force_top_images(random_clip_run: Path, random_clip_report: Path) -> None:
    """The top images of each card are the images with the largest max-over-tokens activation."""
    (entry,) = discover(random_clip_run)
    sae = load_any_sae(entry.sae_dir)
    x = open_ordered(entry.store_dir).batch(0, 24)  # [24, 65, 32]
    with torch.no_grad():
        codes = sae.encode(x.reshape(-1, 32)).reshape(24, 65, -1)
    image_max = codes.amax(dim=1)  # [24, F]
    for card in json.loads((random_clip_report.parent / "cards.json").read_text()):
        values = image_max[:, card["feature"]]
        expected = [int(i) for i in values.argsort(descending=True, stable=True)[:4] if values[i] > 0]
        assert sorted(card["top_images"]) == sorted(expected)
        assert card["frequency"] == pytest.approx(float((codes[..., card["feature"]] != 0).double().mean()), rel=1e-12)


def test_feature_page_shows_steering_example_and_strength_curve(random_clip_report: Path) -> None:
    page = (random_clip_report.parent / "features" / "layer-1-3.html").read_text()
    assert "Steering example" in page and "p after (α = 20)" in page
    assert "Strength curve" in page
