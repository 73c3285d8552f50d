"""Model interface: typed requests, backends, and the caching wrapper."""

from valuelens.models.base import Backend, sample_seed
from valuelens.models.cached import CachedModel
from valuelens.models.registry import BACKENDS, load_backend
from valuelens.models.requests import (
    GenerateRequest,
    GenerateResult,
    GenerateSettings,
    Message,
    OptionRequest,
    OptionResult,
    as_messages,
)

__all__ = [
    "BACKENDS", "Backend", "CachedModel", "GenerateRequest", "GenerateResult", "GenerateSettings",
    "Message", "OptionRequest", "OptionResult", "as_messages", "load_backend", "sample_seed",
]
