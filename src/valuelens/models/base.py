"""The backend protocol every model implementation follows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from valuelens.models.requests import GenerateRequest, OptionRequest, OptionResult


@runtime_checkable
class Backend(Protocol):
    """A model behind one of the two request kinds.

    ``identity`` goes into every cache key: it must change whenever the
    model's answers could (weights hash or revision, dtype, backend kind).
    ``stats`` counts faults met and retried (for ``run.json``).
    """

    supports_beams: bool
    stats: dict[str, int]

    def identity(self) -> dict[str, Any]: ...

    def option_distribution(self, requests: Sequence[OptionRequest]) -> list[OptionResult]: ...

    def generate(self, items: Sequence[tuple[GenerateRequest, int]]) -> list[str]:
        """One text per (request, sample index); sample ``i`` uses the seed
        :func:`sample_seed` (settings.seed, i) so it is reproducible alone."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Trainable(Protocol):
    """A backend that can be fine-tuned. ``finetune`` returns a *new* backend
    with the tuned weights and its own identity, and the training log; the
    backend it is called on keeps computing with its own weights."""

    def finetune(self, train: list[Any], val: list[Any], settings: Any, out_dir: Any,
                 tracker: Any = None) -> tuple[Backend, list[dict[str, Any]]]: ...


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index``: independent of batching and of other samples."""
    return (int(seed) * 1_000_003 + int(index)) % (2**31 - 1)
