"""Smoke test of benchmarks/peers.py at toy sizes, so the script cannot silently rot.

clipsteer against its own paper recipe always runs; each peer library runs where it is installed
(`pip install -e .[peers]`) and is skipped with a message otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clipsteer.activations.format import StoreSpec
from clipsteer.activations.writer import StoreWriter

PEERS_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"
D, TOKENS, IMAGES = 16, 5, 120


def load_script(path: Path, name: str):
    """A benchmarks/ script imported as module `name` (registered: dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_peers():
    return load_script(PEERS_SCRIPT, "peers_benchmark")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("peers") / "store"
    spec = StoreSpec(model_name="fake-clip", model_revision="r0", model_dtype="float32", site="blocks.1.resid_post",
                     tokens="all", dtype="float16", d_model=D, n_tokens_per_image=TOKENS, first_token=0,
                     shard_rows=128, dataset="fake", dataset_fingerprint="fp", n_images_requested=IMAGES, images_per_batch=20)
    writer = StoreWriter.open(directory, spec)
    rows = torch.randn(IMAGES * TOKENS, D, generator=torch.Generator().manual_seed(0)) + 3.0
    for start in range(0, IMAGES, 20):
        images = np.arange(start, start + 20)
        index = np.stack([np.repeat(images, TOKENS), np.tile(np.arange(TOKENS), 20)], axis=1).astype(np.int32)
        writer.add(start * TOKENS, rows[start * TOKENS:(start + 20) * TOKENS], index, start, start + 20, [])
    writer.finish(IMAGES, [])
    return directory


def run(store: Path, tmp_path: Path, arch: str, libraries: list[str]) -> dict:
    peers = load_peers()
    out = tmp_path / f"peers_{arch}"
    result = peers.main(["--store", str(store), "--arch", arch, "--expansion", "2", "--k", "4", "--batch", "64",
                         "--tokens", str(64 * 4), "--evals", "2", "--skip", "1", "--held-out-images", "20",
                         "--libraries", *libraries, "--out", str(out)])
    assert json.loads(out.with_suffix(".json").read_text())["setting"]["arch"] == arch
    assert "| library |" in out.with_suffix(".md").read_text()
    return result


@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_clipsteer_against_its_paper_recipe(store: Path, tmp_path: Path, arch: str) -> None:
    result = run(store, tmp_path, arch, ["clipsteer", "clipsteer-paper"])
    names = [row["library"] for row in result["throughput"]]
    assert names == ["clipsteer", "clipsteer-paper"]
    paired = result["throughput"][1]
    assert paired["ratio_q1"] <= paired["ratio"] <= paired["ratio_q3"] and paired["timed_steps"] == 3
    for entry in result["quality"]:
        assert [e["tokens"] for e in entry["evals"]] == [64, 256]
        last = entry["evals"][-1]
        assert np.isfinite(last["ev"]) and 0 <= last["dead"] <= 1 and 0 < last["l0"] <= 2 * D
        if arch == "topk":
            assert last["l0"] <= 4
    if arch == "relu":
        assert set(next(iter(result["frontier_ev_at_l0"].values()))) == {"clipsteer", "clipsteer-paper"}


@pytest.mark.parametrize(("peer", "arch"), [("sparsify", "topk"), ("dictionary_learning", "relu")])
def test_one_peer_side_by_side(store: Path, tmp_path: Path, peer: str, arch: str) -> None:
    module = load_peers().PEER_MODULES[peer]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{peer} is not installed (pip install -e .[peers] torch==2.13.0 to run it)")
    result = run(store, tmp_path, arch, ["clipsteer", peer])
    assert [row["library"] for row in result["throughput"]] == ["clipsteer", peer]
    assert all(np.isfinite(q["evals"][-1]["ev"]) for q in result["quality"])


def test_relu_frontier_interpolates_in_log_l0() -> None:
    peers = load_peers()
    assert peers.ev_at_l0([(10.0, 0.5), (1000.0, 0.9)], 100.0) == pytest.approx(0.7)
    assert peers.ev_at_l0([(10.0, 0.5), (1000.0, 0.9)], 5.0) is None        # no extrapolation
    quality = [{"library": f"{lib} λ={lam}", "evals": [{"l0": l0, "ev": ev}]}
               for lib, lam, l0, ev in [("clipsteer", 1, 100.0, 0.8), ("peer", 1, 10.0, 0.6), ("peer", 2, 1000.0, 0.9)]]
    assert peers.frontier(quality) == {"10.0": {"clipsteer": None, "peer": 0.6},          # every library's L0
                                       "100.0": {"clipsteer": 0.8, "peer": pytest.approx(0.75)},
                                       "1000.0": {"clipsteer": None, "peer": 0.9}}


def test_recipe_ablations_run_as_libraries_and_unknown_ones_are_named(store: Path, tmp_path: Path) -> None:
    result = run(store, tmp_path, "relu", ["clipsteer", "clipsteer-ln_mse"])
    assert [row["library"] for row in result["throughput"]] == ["clipsteer", "clipsteer-ln_mse"]
    with pytest.raises(ValueError, match="clipsteer-bogus.*ln_mse"):
        run(store, tmp_path, "relu", ["clipsteer", "clipsteer-bogus"])


def test_gpu_step_anatomy_runs_at_a_toy_size() -> None:
    """benchmarks/gpu_step_anatomy.py (meant for a GPU) on the CPU at d=8: every library it finds gets a row."""
    import subprocess
    script = PEERS_SCRIPT.parent / "gpu_step_anatomy.py"
    result = subprocess.run([sys.executable, str(script), "--device", "cpu", "--d", "8", "--steps", "2",
                             "--profiled", "1"], capture_output=True, text=True, timeout=300, check=True)
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("clipsteer")]
    assert [" ".join(row[:-4]) for row in rows] == ["clipsteer", "clipsteer bf16 autocast"] * 2, result.stdout
    for row in rows:  # wall, kernels, idle, host ms: the wall and host times positive, idle = wall − kernels
        wall, kernels, idle, host = (float(cell) for cell in row[-4:])
        assert wall > 0 and host > 0 and abs(idle - (wall - kernels)) < 0.02


def load_export():
    return load_script(PEERS_SCRIPT.parent / "peer_sae_export.py", "peer_sae_export")


class PeerLayoutTopK(torch.nn.Module):
    """dictionary_learning's AutoEncoderTopK layout and forward, written out: codes = top-k of
    ReLU(encoder(x − b_dec)), x̂ = decoder(codes) + b_dec."""

    def __init__(self, d: int, width: int, k: int, generator: torch.Generator) -> None:
        super().__init__()
        self.k = k
        self.encoder = torch.nn.Linear(d, width)
        self.decoder = torch.nn.Linear(width, d, bias=False)
        self.b_dec = torch.nn.Parameter(torch.zeros(d))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        post = torch.relu(self.encoder(x - self.b_dec))
        top = post.topk(self.k, dim=-1)
        return self.decoder(torch.zeros_like(post).scatter_(-1, top.indices, top.values)) + self.b_dec


def test_peer_sae_export_encodes_as_the_peer_does() -> None:
    from clipsteer.sae.config import SAEConfig

    export = load_export()
    generator = torch.Generator().manual_seed(0)
    ae = PeerLayoutTopK(D, 4 * D, 3, generator)
    sae = export.as_clipsteer(ae, SAEConfig(d_in=D, d_sae=4 * D, architecture="topk", k=3, normalization="none"))
    x = torch.randn(50, D, generator=generator)
    with torch.no_grad():
        assert torch.allclose(sae.decode(sae.encode(x)), ae(x), atol=1e-4)
        assert ((sae.encode(x) > 0).sum(-1) <= 3).all()


def test_peer_sae_export_writes_a_loadable_sae(store: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("dictionary_learning") is None:
        pytest.skip("dictionary_learning is not installed (pip install -e .[peers] torch==2.13.0 to run it)")
    from clipsteer.sae.io import load_sae

    path = load_export().main(["--store", str(store), "--out", str(tmp_path / "sae"), "--tokens", str(64 * 4),
                               "--batch", "64", "--expansion", "2", "--k", "4"])
    sae = load_sae(path)
    assert (sae.config.site, sae.config.k, sae.config.d_sae, sae.config.normalization) == \
        ("blocks.1.resid_post", 4, 2 * D, "none")
