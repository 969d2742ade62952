"""One CLI, `clipsteer <command>`, thin over the library.

Every command is a frozen config dataclass plus a function that runs it. Flags are generated from
the dataclass by tyro; `--config-file FILE` (TOML or YAML) supplies defaults that flags override.
Commands with two words (`clipsteer world train-clip`) are registered under their full name.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tyro

from clipsteer.config_files import load_config_file
from clipsteer.errors import ClipsteerError


@dataclass(frozen=True)
class Command:
    """A CLI command: `target` is "module:function"; the function takes one config dataclass."""

    target: str
    config: str  # "module:ConfigClass"
    help: str

    def config_class(self) -> type:
        """The config dataclass: its module imports no torch, so `--help` answers at once."""
        return _load(self.config)  # type: ignore[no-any-return]

    def function(self) -> Callable[[Any], Any]:
        """The command's function (imports the heavy modules)."""
        return _load(self.target)  # type: ignore[no-any-return]


def _load(ref: str) -> Any:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


# Imports are lazy (strings) so that `clipsteer --help` is instant and one command's optional
# dependencies never break another command.
COMMANDS: dict[str, Command] = {
    "demo": Command("clipsteer.demo:run_demo", "clipsteer.experiments.configs:DemoConfig",
                    "Run the end-to-end pipeline on the embedded toy CLIP and synthetic world."),
    "inspect-model": Command("clipsteer.models.commands:inspect_model", "clipsteer.models.configs:InspectModelConfig",
                             "Load a CLIP checkpoint and print its layout, hook sites and an embedding check."),
    "harvest": Command("clipsteer.activations.harvest:harvest", "clipsteer.activations.configs:HarvestConfig",
                       "Run images through the model and store activations at one or more sites (resumable)."),
    "check": Command("clipsteer.activations.check:check_store", "clipsteer.activations.configs:CheckConfig",
                     "Verify an activation store in full: shard checksums, sizes and finite values."),
    "train": Command("clipsteer.sae.commands:train", "clipsteer.sae.configs:TrainConfig",
                     "Train SAEs (one, or a sweep over λ or k sharing one data stream) on an activation store (resumable)."),
    "world train-clip": Command("clipsteer.world.train:train_clip", "clipsteer.world.configs:TrainClipConfig",
                                "Train the toy CLIP contrastively on the synthetic world (resumable)."),
    "world evaluate": Command("clipsteer.world.evaluate:evaluate_world", "clipsteer.world.configs:WorldEvalConfig",
                              "Zero-shot, spurious-correlation and typographic metrics of a toy CLIP."),
    "world show": Command("clipsteer.world.show:show_world", "clipsteer.world.configs:ShowConfig",
                          "Write a PNG grid of world samples with their captions."),
    "eval": Command("clipsteer.evaluate.commands:evaluate_sae", "clipsteer.evaluate.configs:EvalConfig",
                    "Evaluate an SAE: L0 (CLS/patches), EV, dead/dense, CE recovered, factor recovery on the world."),
    "steerability": Command("clipsteer.steer.commands:steerability", "clipsteer.steer.configs:SteerabilityConfig",
                            "Score how precisely each SAE feature / neuron steers CLIP beside a random-direction null."),
    "report": Command("clipsteer.report.commands:report", "clipsteer.report.commands:ReportConfig",
                      "Write a static HTML report of a run: SAE quality, steerability and a feature browser."),
    "export": Command("clipsteer.sae.export:export", "clipsteer.sae.configs:ExportConfig",
                      "Write an SAE in SAELens' or ViT-Prisma's format (clipsteer export SAE --format saelens|prisma)."),
    "push": Command("clipsteer.sae.push:push", "clipsteer.sae.configs:PushConfig",
                    "Upload an SAE folder with a generated model card to the Hugging Face Hub (clipsteer push SAE org/repo)."),
    "debias": Command("clipsteer.experiments.debias:debias", "clipsteer.experiments.configs:DebiasConfig",
                      "Suppress SAE features that carry a spurious attribute; worst-group accuracy vs controls."),
    "typographic-defense": Command("clipsteer.experiments.typographic:typographic_defense",
                                   "clipsteer.experiments.configs:TypographicDefenseConfig",
                                   "Suppress text-reading SAE features; accuracy under typographic attack vs controls."),
    "sparsity-study": Command("clipsteer.experiments.sparsity:sparsity_study",
                              "clipsteer.experiments.configs:SparsityStudyConfig",
                              "L0 of ReLU+L1 SAEs at every layer: CLS vs patches, and vision vs text tower."),
    "layer-sweep": Command("clipsteer.experiments.layer_sweep:layer_sweep",
                           "clipsteer.experiments.configs:LayerSweepConfig",
                           "Harvest, train, evaluate and steer at every layer; per-layer table and plot."),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: clipsteer <command> [--config-file FILE] [flags]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {cmd.help}" for name, cmd in sorted(COMMANDS.items())]
    lines += ["", "`clipsteer <command> --help` lists a command's flags."]
    return "\n".join(lines)


def _split_command(argv: Sequence[str]) -> tuple[str, list[str]]:
    """Longest registered command name that prefixes argv (commands may be two words)."""
    for n_words in (2, 1):
        name = " ".join(argv[:n_words])
        if len(argv) >= n_words and name in COMMANDS:
            return name, list(argv[n_words:])
    raise SystemExit(f"clipsteer: unknown command {' '.join(argv[:2])!r}.\n\n{_usage()}")


def _pop_config_file(args: list[str]) -> tuple[str | None, list[str]]:
    for i, arg in enumerate(args):
        if arg == "--config-file":
            if i + 1 >= len(args):
                raise SystemExit("clipsteer: --config-file needs a path")
            return args[i + 1], args[:i] + args[i + 2 :]
        if arg.startswith("--config-file="):
            return arg.split("=", 1)[1], args[:i] + args[i + 1 :]
    return None, args


def run_command(argv: Sequence[str]) -> Any:
    """Parse `argv` (without the program name), run the command and return its result."""
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return None
    name, rest = _split_command(argv)
    config_cls = COMMANDS[name].config_class()
    config_path, rest = _pop_config_file(rest)
    default = load_config_file(config_path, config_cls) if config_path else None
    assert dataclasses.is_dataclass(config_cls), f"{name}: config {config_cls} must be a dataclass"
    config = tyro.cli(config_cls, args=rest, default=default, prog=f"clipsteer {name}",
                      description=COMMANDS[name].help)
    return COMMANDS[name].function()(config)


def main() -> None:
    """Console entry point; results are printed by the commands themselves, never used as exit codes.

    Bad input and unwritable outputs (the families of `clipsteer.errors`, plus ValueError /
    OSError from below, whose messages name what was wrong) are reported in one line with exit
    status 2; CLIPSTEER_DEBUG=1 shows the traceback instead.
    """
    try:
        run_command(sys.argv[1:])
    except (ClipsteerError, ValueError, OSError) as err:
        if os.environ.get("CLIPSTEER_DEBUG"):
            raise
        print(f"clipsteer: error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None


def one_line(err: BaseException) -> str:
    """The error's message on one line (multi-line messages are joined with ' | ')."""
    if isinstance(err, OSError) and not isinstance(err, ClipsteerError) and err.filename is not None:
        message = f"{err.strerror or type(err).__name__}: {err.filename}"
    else:
        message = str(err) or type(err).__name__
    return " | ".join(line.strip() for line in message.strip().splitlines() if line.strip())


if __name__ == "__main__":
    main()
