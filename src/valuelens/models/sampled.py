"""Option distributions estimated from sampled answers (no log-probabilities).

A backend that cannot return log-probabilities (many hosted APIs) asks for
``N`` answers at temperature 1, each with its own seed, maps each answer to
an option with :func:`parse_label` (the first-token layer's parser of free
answers, ``valuelens.layers.first_token.parse_letter``, generalised to labels
of more than one character) and returns :func:`estimate`: the empirical share
of each option among the valid answers, the share of valid answers as
``covered_mass`` (1 − the invalid share), each option's 95% Wilson score
interval, and ``estimated=True`` so every table and the report can say the
numbers are estimates. ``bench/sampled_options.py`` measures the error
against exact distributions by N (README: "Option distributions by sampling").
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from valuelens.models.requests import OptionResult

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """The first option label in a reply: "(B)", "B)", "B.", "B:", "B," or a
    lone "B" (for one-letter labels exactly what ``first_token.parse_letter``
    accepts); None when there is none."""
    if not labels:
        return None
    alts = "|".join(re.escape(lab) for lab in sorted(labels, key=len, reverse=True))
    m = re.search(rf"(?<![A-Za-z0-9])\(?({alts})(?:\)|\.|:|,|\s|$|）)", text.strip())
    return m.group(1) if m else None


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (n > 0)."""
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # clipped to [0, 1] and made to hold p exactly (float rounding at k = 0 or k = n)
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def estimate(answers: Sequence[str | None], labels: Sequence[str]) -> OptionResult:
    """An :class:`OptionResult` from parsed answers (None: no option named)."""
    n = len(answers)
    if n == 0:
        raise ValueError("an estimate needs at least one sample")
    counts = [sum(1 for a in answers if a == lab) for lab in labels]
    valid = sum(counts)
    if valid == 0:
        return OptionResult(None, 0.0, estimated=True, samples=n)
    return OptionResult(tuple(k / valid for k in counts), valid / n, estimated=True, samples=n,
                        interval=tuple(wilson(k, valid) for k in counts))
