"""The base of every settings model: unknown keys are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A pydantic model that refuses keys it does not declare (typos in the audit file)."""

    model_config = ConfigDict(extra="forbid")
