"""Hugging Face Hub addresses: `hf://org/repo[/subfolder]` → a local folder, through huggingface_hub's cache.

The cache is read first; the Hub is asked only when online. With `HF_HUB_OFFLINE=1` (or no network) a
repository that is not cached is a `HubError` that says how to bring it here. `hf:/org/repo` (what
`pathlib.Path` makes of `hf://org/repo` when a config field is a Path) means the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PREFIXES = ("hf://", "hf:/")


class HubError(FileNotFoundError):
    """A Hub address that is malformed, or whose files are neither cached nor downloadable."""


@dataclass(frozen=True)
class HubAddress:
    repo_id: str
    """`org/repo`."""
    subfolder: str | None = None
    """A folder inside the repository (e.g. one SAE of several), or None for the whole repository."""

    def __str__(self) -> str:
        return f"hf://{self.repo_id}" + (f"/{self.subfolder}" if self.subfolder else "")


def is_hub_address(value: str | Path) -> bool:
    return str(value).startswith(PREFIXES)


def parse_hub_address(value: str | Path) -> HubAddress:
    """`hf://org/repo[/sub/folder]` (or `hf:/…`) → HubAddress."""
    text = str(value)
    prefix = next((p for p in PREFIXES if text.startswith(p)), None)
    if prefix is None:
        raise HubError(f"{text!r} is not a Hub address; expected hf://org/repo[/subfolder]")
    parts = [part for part in text[len(prefix):].split("/") if part]
    if len(parts) < 2 or any(part in (".", "..") for part in parts):
        raise HubError(f"{text!r}: expected hf://org/repo[/subfolder]")
    return HubAddress("/".join(parts[:2]), "/".join(parts[2:]) or None)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def resolve_hub_path(value: str | Path, revision: str | None = None) -> Path:
    """The local folder holding `hf://org/repo[/subfolder]` (cached snapshot, downloaded when online)."""
    address = parse_hub_address(value)
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    patterns = [f"{address.subfolder}/*"] if address.subfolder else None
    try:
        root = Path(snapshot_download(address.repo_id, revision=revision, allow_patterns=patterns,
                                      local_files_only=offline))
    except Exception as error:  # huggingface_hub raises many types here; to the user they mean one thing
        where = "is disabled (HF_HUB_OFFLINE=1)" if offline else "could not be reached"
        raise HubError(
            f"{address}: not in the local Hugging Face cache, and the Hub {where} ({type(error).__name__}). "
            f"On a machine with access run `hf download {address.repo_id}` (or `huggingface-cli download "
            f"{address.repo_id}`) and copy its cache here (HF_HUB_CACHE), or download to a folder with "
            "--local-dir and pass that folder's path instead") from error
    folder = root / address.subfolder if address.subfolder else root
    if not folder.is_dir():
        raise HubError(f"{address}: the repository snapshot {root} has no folder {address.subfolder!r}")
    return folder
