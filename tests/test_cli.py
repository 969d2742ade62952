import json
import os
from pathlib import Path

import pytest

from clipsteer.cli import COMMANDS, run_command
from clipsteer.models.testing import tiny_backbone


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_backbone(seed=1).save_pretrained(tmp_path_factory.mktemp("ckpt"))


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    run_command(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_every_command_resolves_to_a_function_and_frozen_config() -> None:
    import dataclasses
    for name, command in COMMANDS.items():
        config_cls = command.config_class()
        assert callable(command.function()), name
        assert dataclasses.is_dataclass(config_cls) and config_cls.__dataclass_params__.frozen, name


def test_command_configs_import_without_torch() -> None:
    """`clipsteer CMD --help` only needs the config: its module must not pull in torch or transformers."""
    import subprocess
    import sys

    modules = sorted({command.config.split(":")[0] for command in COMMANDS.values()})
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))")
    env = {k: v for k, v in os.environ.items() if k != "CLIPSTEER_OPEN_CLIP_SITE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_every_flag_has_a_description() -> None:
    """tyro shows a field's docstring as its flag's help; a field without one shows only its default."""
    import dataclasses
    import typing

    from tyro._docstrings import get_field_docstring

    def undocumented(cls: type, prefix: str = "") -> list[str]:
        hints, missing = typing.get_type_hints(cls), []
        for field in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[field.name]):
                missing += undocumented(hints[field.name], f"{prefix}{field.name}.")
            elif not get_field_docstring(cls, field.name, ()):
                missing.append(prefix + field.name)
        return missing

    assert {name: undocumented(c.config_class()) for name, c in COMMANDS.items() if undocumented(c.config_class())} == {}


def test_flags(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = run_command(["inspect-model", "--model", str(checkpoint), "--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == info
    assert info["n_layers"] == 3 and info["d_model"] == 32


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_config_file_supplies_defaults_and_flags_override(checkpoint: Path, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cfg{suffix}"
    path.write_text(f'model = "{checkpoint}"\njson = true\n' if suffix == ".toml"
                    else f"model: {checkpoint}\njson: true\n")
    info = run_command(["inspect-model", "--config-file", str(path), "--no-json"])
    assert info["grid"] == 4


def test_config_file_with_unknown_field_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text('model = "x"\nmodle = "typo"\n')
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['modle'\].*expected some of"):
        run_command(["inspect-model", "--config-file", str(path)])


def test_unknown_command_is_explained() -> None:
    with pytest.raises(SystemExit, match="unknown command 'bogus'"):
        run_command(["bogus"])


def test_console_entry_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "clipsteer.cli", "inspect-model", "--model", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("clipsteer: error: checkpoint folder not found")
    assert "Traceback" not in result.stderr


def test_composite_commands_nest_the_component_flags() -> None:
    """One spelling per knob: layer-sweep and demo take `clipsteer train`'s flags under --train."""
    import tyro

    from clipsteer.experiments.configs import DemoConfig, LayerSweepConfig

    for config_cls in (LayerSweepConfig, DemoConfig):
        config = tyro.cli(config_cls, args=["--train.trainer.lr", "0.002", "--train.k", "8", "--steer.n-images", "5",
                                            "--harvest.max-images", "10", "--eval.n-images", "7"])
        assert config.train.trainer.lr == 0.002 and config.train.k == 8 and config.steer.n_images == 5
        assert config.harvest.max_images == 10 and config.eval.n_images == 7


def test_composite_refuses_a_field_it_owns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--train\.trainer\.seed is set by layer-sweep itself"):
        run_command(["layer-sweep", "--out", str(tmp_path), "--train.trainer.seed", "3"])
    assert not (tmp_path / "activations").exists()  # refused before any work
