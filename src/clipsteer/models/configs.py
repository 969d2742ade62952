"""Configs of the model commands, importable without torch (so `clipsteer inspect-model --help` is instant)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InspectModelConfig:
    model: str
    """A local Hugging Face CLIP folder, or a hub id when the hub is reachable."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, …"""
    json: bool = False
    """Print one JSON object instead of text."""
