"""`clipsteer push`: the staged folder, its model card, and the upload calls (no network)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch
import tyro

from clipsteer.cli import run_command
from clipsteer.evaluate.results import Downstream, EvalResult, Reconstruction
from clipsteer.sae import SAEConfig, SAERecipe, TensorSource, Trainer, TrainerConfig, load_any_sae
from clipsteer.sae.configs import TrainConfig
from clipsteer.sae.push import NOT_RECORDED
from clipsteer.sae.recipe import ObjectiveConfig

TRAINER = TrainerConfig(tokens_per_batch=32, total_tokens=640, lr=1e-3, lr_warmup_steps=2, init_samples=64,
                        checkpoint_every=10, log_every=5)
OBJECTIVE = ObjectiveConfig(ghost_grads=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) training run folder: <run>/config.json, metrics.jsonl, saes/topk_x4_k3/."""
    run = tmp_path_factory.mktemp("run")
    data = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
    config = SAEConfig(d_in=8, d_sae=32, architecture="topk", k=3, site="blocks.1.resid_post", tokens="patches",
                       model="org/tiny-clip")
    Trainer([SAERecipe("topk_x4_k3", config, OBJECTIVE)], TensorSource(data), TRAINER, run_dir=run,
            extra={"store": "acts/blocks.1.resid_post", "tokens": "patches"}).run()
    # an eval result written by `clipsteer eval`'s own writer (numbers made up for the card test)
    EvalResult(sae="topk_x4_k3", site="blocks.1.resid_post", model="org/tiny-clip", dataset="world:test", n_images=10,
               reconstruction=Reconstruction(tokens=100, explained_variance=0.8125, nmse=0.2, cosine=0.9, l0_cls=2.5,
                                             l0_patches=3.0, l0_patches_fraction=3 / 32, dead_fraction=0.0625,
                                             dense_fraction=0.0),
               density_histogram={}, downstream=Downstream(n_images=10, classes=("a", "b"), embedding_cosine=0.9,
                                                           kl_zero_shot=0.1, agreement=0.9, ce_recovered_pct=91.25),
               factor_recovery=None, config={}).write(run / "saes" / "topk_x4_k3")
    return run


def test_dry_run_stages_the_sae_and_its_card(trained_run: Path, tmp_path: Path) -> None:
    sae_dir = trained_run / "saes" / "topk_x4_k3"
    staged = run_command(["push", str(sae_dir), "org/saes", "--subfolder", "layer_1/topk", "--dry-run",
                          str(tmp_path / "staged")])
    assert sorted(p.name for p in staged.iterdir()) == ["README.md", "config.json", "eval.json", "sae.safetensors"]
    x = torch.randn(5, 8)
    torch.testing.assert_close(load_any_sae(staged).encode(x), load_any_sae(sae_dir).encode(x))
    card = (staged / "README.md").read_text()
    for fact in ("library_name: clipsteer", "base_model: org/tiny-clip", "| Site | blocks.1.resid_post |",
                 "| Tokens | patches |", "| Architecture | topk (k = 3) |", "| Training tokens | 640 |",
                 "| Explained variance | 0.812 |", "| L0 (patch tokens / CLS) | 3.0 / 2.5 |",
                 "| Dead features | 6.2% |", "| CE recovered | 91.2% |",
                 'load_any_sae("hf://org/saes/layer_1/topk")'):
        assert fact in card, fact
    assert NOT_RECORDED not in card


def test_card_command_trains_the_same_sae(trained_run: Path, tmp_path: Path) -> None:
    """The command in the card parses into a TrainConfig whose trainer and objective are the run's."""
    staged = run_command(["push", str(trained_run / "saes" / "topk_x4_k3"), "org/saes", "--dry-run", str(tmp_path / "s")])
    card = (staged / "README.md").read_text()
    command = next(line for line in card.splitlines() if line.startswith("clipsteer train "))
    parsed = tyro.cli(TrainConfig, args=shlex.split(command)[2:])
    assert parsed.trainer == TRAINER and parsed.objective == OBJECTIVE
    assert (parsed.architecture, parsed.k, parsed.expansion_factor, parsed.tokens) == ("topk", 3, 4, "patches")
    assert parsed.store == Path("acts/blocks.1.resid_post") and parsed.out == trained_run


def test_facts_without_a_source_say_so(tmp_path: Path, trained_run: Path) -> None:
    sae = load_any_sae(trained_run / "saes" / "topk_x4_k3")
    from clipsteer.sae import save_sae

    save_sae(sae, tmp_path / "lonely")
    staged = run_command(["push", str(tmp_path / "lonely"), "org/saes", "--dry-run", str(tmp_path / "s")])
    card = (staged / "README.md").read_text()
    assert "| Explained variance | not recorded |" in card and "Training command: not recorded" in card
    assert sorted(p.name for p in staged.iterdir()) == ["README.md", "config.json", "sae.safetensors"]


def test_push_uploads_the_staged_folder(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []

    class FakeApi:
        def create_repo(self, repo_id: str, private: bool, exist_ok: bool) -> None:
            calls.append(("create_repo", repo_id, private, exist_ok))

        def upload_folder(self, repo_id: str, folder_path: Path, path_in_repo: str, commit_message: str) -> object:
            calls.append(("upload_folder", repo_id, path_in_repo, sorted(p.name for p in Path(folder_path).iterdir())))
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/1"})()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    url = run_command(["push", str(trained_run / "saes" / "topk_x4_k3"), "org/saes", "--subfolder", "l1", "--private"])
    assert calls == [("create_repo", "org/saes", True, True),
                     ("upload_folder", "org/saes", "l1", ["README.md", "config.json", "eval.json", "sae.safetensors"])]
    assert url == "https://huggingface.co/org/saes/commit/1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1"):
        run_command(["push", str(trained_run / "saes" / "topk_x4_k3"), "org/saes"])
