"""The names of edit operations and forms (`steer.interventions`), importable without torch for configs."""

from __future__ import annotations

from typing import Literal

EditOp = Literal["clamp", "scale", "add", "ablate", "mean_ablate"]


Form = Literal["delta", "replace", "replace_edited"]
