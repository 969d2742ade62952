"""Table-driven malformed inputs: each must end `clipsteer` with exit status 2 and one line naming the
file or flag and what was expected (no traceback). Families follow issue 13's list of defects."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_helpers import TRAIN_FLAGS, Cli, one_line

from clipsteer.activations.format import METADATA_FILE, shard_file


@dataclass(frozen=True)
class Inputs:
    tmp: Path
    store: Path
    sae_dir: Path
    model_dir: Path
    images: Path

    @property
    def run_dir(self) -> Path:
        return self.sae_dir.parent.parent   # <run>/saes/<name>

    def copy_run(self) -> Path:
        return Path(shutil.copytree(self.run_dir, self.tmp / "run"))

    def copy_store(self) -> Path:
        return Path(shutil.copytree(self.store, self.tmp / "store"))

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path


def latest_checkpoint(run: Path) -> Path:
    return sorted((run / "checkpoints").iterdir())[-1]


def rerun_other_config(x: Inputs) -> list:
    return ["train", "--store", x.store, "--out", x.copy_run(), *TRAIN_FLAGS, "--trainer.lr", "1e-3"]


def truncated_checkpoint(x: Inputs) -> list:
    run = x.copy_run()
    state = latest_checkpoint(run) / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])
    return ["train", "--store", x.store, "--out", run, *TRAIN_FLAGS]


def random_bytes_checkpoint(x: Inputs) -> list:
    run = x.copy_run()
    (latest_checkpoint(run) / "state.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    return ["train", "--store", x.store, "--out", run, *TRAIN_FLAGS]


def corrupt_checkpoint_json(x: Inputs) -> list:
    run = x.copy_run()
    (latest_checkpoint(run) / "state.json").write_text("{ torn")
    return ["train", "--store", x.store, "--out", run, *TRAIN_FLAGS]


def config_file(text: str, name: str = "train.toml") -> Callable[[Inputs], list]:
    def make(x: Inputs) -> list:
        return ["train", "--config-file", x.write(name, text.replace("STORE", str(x.store))), "--out", x.tmp / "o"]
    return make


def invalid_sae_config(x: Inputs) -> list:
    sae = Path(shutil.copytree(x.sae_dir, x.tmp / "sae"))
    (sae / "config.json").write_text('{"format": "clipsteer-sae", ')
    return ["eval", "--sae", sae, "--model", x.model_dir, "--n-images", "4"]


class _Payload:
    def __reduce__(self):   # would create a file if ever unpickled
        return (os.system, ("touch PWNED",))


def pickled_model(x: Inputs) -> list:
    model = Path(shutil.copytree(x.model_dir, x.tmp / "model"))
    (model / "model.safetensors").unlink()
    with (model / "pytorch_model.bin").open("wb") as fh:
        pickle.dump({"weights": _Payload()}, fh, protocol=2)
    return ["inspect-model", "--model", model]


def pickled_sae(x: Inputs) -> list:
    path = x.tmp / "sae.pt"
    x.write("config.json", json.dumps({"d_in": 32, "d_sae": 64, "hook_point": "blocks.1.hook_resid_post"}))
    torch.save({"cfg": _Payload(), "state_dict": {}}, path)
    return ["eval", "--sae", path, "--model", x.model_dir]


def nan_shard(x: Inputs) -> list:
    store = x.copy_store()
    shard = store / shard_file(1)
    shard.write_bytes(np.full(shard.stat().st_size // 2, 0x7E00, dtype="<u2").tobytes())   # fp16 NaN
    return ["train", "--store", store, "--out", x.tmp / "o", *TRAIN_FLAGS]


def nan_shard_without_checksums(x: Inputs) -> list:
    args = nan_shard(x)
    meta = json.loads((x.tmp / "store" / METADATA_FILE).read_text())
    meta["shard_checksums"] = None   # a store written before checksums existed
    (x.tmp / "store" / METADATA_FILE).write_text(json.dumps(meta))
    return args


def flipped_byte(x: Inputs) -> list:
    store = x.copy_store()
    data = bytearray((store / shard_file(2)).read_bytes())
    data[10] ^= 0x01
    (store / shard_file(2)).write_bytes(bytes(data))
    return ["check", store]


CASES: dict[str, tuple[Callable[[Inputs], list], tuple[str, ...]]] = {
    # 1. train reruns
    "train rerun, different config": (rerun_other_config, ("different configuration", "lr", "run")),
    "train, truncated latest checkpoint": (truncated_checkpoint, ("corrupt checkpoint", "state.safetensors", "delete")),
    "train, random-bytes checkpoint": (random_bytes_checkpoint, ("corrupt checkpoint", "state.safetensors")),
    "train, torn checkpoint state.json": (corrupt_checkpoint_json, ("state.json", "not valid JSON")),
    # 3. config files and SAE files
    "config: batch_size string": (config_file('store = "STORE"\n[trainer]\ntokens_per_batch = "abc"\n'),
                                  ("train.toml", "trainer.tokens_per_batch", "expected an integer", "'abc'")),
    "config: expansion_factor word": (config_file('store = "STORE"\nexpansion_factor = "eight"\n'),
                                      ("train.toml", "expansion_factor", "expected an integer")),
    "config: nested config not a table": (config_file('store = "STORE"\ntrainer = 5\n'),
                                          ("train.toml", "field trainer", "table of TrainerConfig")),
    "config: literal out of range": (config_file('store = "STORE"\narchitecture = "gated"\n'),
                                     ("architecture", "one of 'relu'")),
    "config: TOML syntax": (config_file('store = "STORE\n'), ("train.toml", "invalid TOML", "line 1")),
    "config: YAML syntax": (config_file("store: [STORE\n", "train.yaml"), ("train.yaml", "invalid YAML", "line")),
    "config: unknown field": (config_file('store = "STORE"\nexpansion = 3\n'), ("unknown field", "expansion")),
    "SAE config.json not JSON": (invalid_sae_config, ("config.json", "not valid JSON")),
    # 4. files whose loading would run code
    "config: YAML python tag": (config_file('store: !!python/object/apply:os.system ["touch PWNED"]\n', "t.yaml"),
                                ("t.yaml", "refused a YAML python tag")),
    "pickled model weights": (pickled_model, ("refused", "never unpickles", "pytorch_model.bin")),
    "pickled SAE .pt": (pickled_sae, ("sae.pt", "refused", "never unpickles")),
    # 6. sizes
    "eval --n-images 0": (lambda x: ["eval", "--sae", x.sae_dir, "--n-images", "0"], ("--n-images", "positive")),
    "eval --images-per-batch -1": (lambda x: ["eval", "--sae", x.sae_dir, "--images-per-batch", "-1"], ("--images-per-batch", "positive")),
    "steerability --n-images 0": (lambda x: ["steerability", "--out", x.tmp / "s", "--n-images", "0"],
                                  ("--n-images", "positive")),
    "steerability --pairs-per-forward 0": (lambda x: ["steerability", "--out", x.tmp / "s", "--pairs-per-forward", "0"],
                                    ("--pairs-per-forward", "positive")),
    "harvest --shard-rows 0": (lambda x: ["harvest", "--sites", "blocks.1.resid_post", "--out", x.tmp / "h",
                                          "--shard-rows", "0"], ("--shard-rows", "positive")),
    # 7. store integrity
    "NaN shard, checksum recorded": (nan_shard, ("checksum mismatch", shard_file(1), "harvest")),
    "NaN shard, no checksum": (nan_shard_without_checksums, ("NaN/inf", "store", shard_file(1))),
    "check: flipped byte": (flipped_byte, ("checksum mismatch", shard_file(2))),
    "missing store": (lambda x: ["train", "--store", x.tmp / "nowhere"], ("nowhere", "not a directory")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_is_one_line_with_exit_2(case: str, cli: Cli, tmp_path: Path, store: Path, sae_dir: Path,
                                                  model_dir: Path, images: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    make, words = CASES[case]
    monkeypatch.chdir(tmp_path)
    args = make(Inputs(tmp_path, store, sae_dir, model_dir, images))
    code, stderr = cli(*args)
    line = one_line(stderr)
    assert code == 2, stderr
    for word in words:
        assert word in line, f"{case}: {word!r} not in {line!r}"
    assert not (tmp_path / "PWNED").exists()


def test_debug_variable_keeps_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from clipsteer.cli import main
    from clipsteer.errors import ConfigError

    path = tmp_path / "bad.toml"
    path.write_text('store = "x"\nexpansion_factor = "eight"\n')
    monkeypatch.setattr(sys, "argv", ["clipsteer", "train", "--config-file", str(path)])
    monkeypatch.setenv("CLIPSTEER_DEBUG", "1")
    with pytest.raises(ConfigError, match="expansion_factor"):
        main()
