"""Checks ``valuelens validate`` makes beyond the audit file, the layers'
data and the output directory: what a run would need from this machine's
environment. Each failure is one :class:`ValueLensError` line naming the
audit file, line and key."""

from __future__ import annotations

import os

from valuelens.config import AuditConfig
from valuelens.errors import ValueLensError
from valuelens.models.registry import check_device


def check_environment(audit: AuditConfig) -> None:
    """Every ``api_key_env`` variable is set (not empty); every requested torch device exists."""
    for i, m in enumerate(audit.models):
        name = m.options.get("api_key_env")
        if name and not os.environ.get(name):
            raise ValueLensError(f"{audit.where('models', i, 'options', 'api_key_env')}: the environment variable "
                                 f"{name} (the API key of model {m.name}) is not set")
        device = m.options.get("device")
        if device and m.spec.kind in ("hf", "embedded"):
            try:
                check_device(device)
            except ValueLensError as e:
                raise ValueLensError(f"{audit.where('models', i, 'options', 'device')}: {e}") from None


def preflight(audit: AuditConfig) -> None:
    """All of the above (the output directory is ``audit.check_out_dir``'s)."""
    check_environment(audit)
