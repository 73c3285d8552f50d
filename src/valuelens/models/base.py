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


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index``: independent of batching and of other samples."""
    return (int(seed) * 1_000_003 + int(index)) % (2**31 - 1)
