"""The report as a browser shows it: headless Chromium loads index.html from disk, screenshots it and dumps
its DOM. Chromium is installed by scripts/ensure_chromium.sh (run by `make test`, and here when missing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure_chromium.sh"
WINDOW = (1280, 4000)


def find_chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    if find_chromium() is None:
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=False, timeout=1200)
    path = find_chromium()
    if path is None:
        pytest.skip("Chromium is not installed and scripts/ensure_chromium.sh could not install it (it needs "
                    "apt-get and root or passwordless sudo): the report was not checked in a browser")
    return path


def headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
               "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=10000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_report_renders_in_headless_chromium(chromium: str, random_clip_report: Path, tmp_path: Path) -> None:
    url = random_clip_report.resolve().as_uri()
    dom = headless(chromium, tmp_path / "profile-dom", "--dump-dom", url).stdout
    (tmp_path / "dom.html").write_text(dom)
    # The page's load handler counted its pictures: all of them decoded, none missing.
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    missing = re.search(r'data-images-missing="(\d+)"', dom)
    assert loaded and missing, f"the page's load handler did not run; DOM starts: {dom[:300]!r}"
    assert int(missing.group(1)) == 0 and int(loaded.group(1)) > 40
    for plot in ("img/quality.png", "img/steerable_fraction.png", "img/layer-1/steerability_hist.png"):
        assert f'src="{plot}"' in dom, f"plot {plot} is not on the page"
    cards = re.findall(r'<a class="card".*?</a>', dom, flags=re.S)
    assert len(cards) == 10 and any(len(re.findall(r"<img ", card)) >= 2 for card in cards)
    assert "10 of 10 features" in dom  # the browser's filter script ran

    shot = tmp_path / "screenshot.png"
    result = headless(chromium, tmp_path / "profile-shot", f"--screenshot={shot}", url)
    assert shot.is_file(), f"no screenshot: {result.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    background = np.array([0xF6, 0xF7, 0xF9], dtype=np.float32)  # the page colour; a blank page is all this
    drawn = (np.abs(pixels - background).sum(axis=2) > 30).mean()
    colours = len(np.unique(pixels.reshape(-1, 3)[::7].astype(np.uint8), axis=0))
    assert drawn > 0.03 and colours > 200, f"screenshot looks blank: {drawn:.1%} drawn, {colours} colours"
