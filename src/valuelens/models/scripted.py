"""Canned answers: a backend for tests and dry runs, no model needed.

File format (JSON)::

    {"name": "fixed", "rules": [{"contains": "China", "probs": [0.1, 0.9], "text": "Answer: 2"}],
     "default_text": "Answer: 1"}

A request takes the first rule whose ``contains`` occurs in its rendered
prompt; ``contains`` may also be a list of strings, all of which must occur
(``{"contains": ["Predict", "country: China"], "text": "..."}``). Without
``probs`` the distribution is a deterministic function of the prompt (a
hash), so different prompts give different answers. ``"delay": SECONDS``
waits that long per request (a stand-in for a model's latency, e.g. for
tests that interrupt a run part-way); it changes no answer.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from valuelens.data.survey import read_json
from valuelens.errors import ValueLensError
from valuelens.models.base import sample_seed
from valuelens.models.requests import GenerateRequest, OptionRequest, OptionResult


def _prompt(messages, prefill: str) -> str:
    return "\n\n".join(m.content for m in messages) + prefill


def _hash01(text: str, salt: int = 0) -> float:
    h = hashlib.sha256(f"{salt}|{text}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


class ScriptedBackend:
    supports_beams = True

    def __init__(self, rules: list[dict[str, Any]] | None = None, default_text: str = "Answer: 1",
                 name: str = "scripted", delay: float = 0.0):
        self.rules = rules or []
        self.default_text = default_text
        self.name = name
        self.delay = float(delay)
        self.stats: dict[str, int] = {}
        self.calls = 0

    @classmethod
    def from_file(cls, path: str) -> ScriptedBackend:
        raw = read_json(Path(path))
        if not isinstance(raw, dict) or not isinstance(raw.get("rules", []), list):
            raise ValueLensError(f"{path}: expected an object with a 'rules' list")
        for i, r in enumerate(raw.get("rules", [])):
            c = r.get("contains", "") if isinstance(r, dict) else None
            if not (isinstance(c, str) or isinstance(c, list) and all(isinstance(x, str) for x in c)):
                raise ValueLensError(f"{path}: rules[{i}]: expected an object whose 'contains' is a string "
                                     "or a list of strings")
        delay = raw.get("delay", 0)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 60:  # NaN fails too
            raise ValueLensError(f"{path}: 'delay' must be a number of seconds from 0 to 60")
        return cls(raw.get("rules", []), raw.get("default_text", "Answer: 1"), raw.get("name", Path(path).stem),
                   delay)

    def identity(self) -> dict[str, Any]:
        digest = hashlib.sha256(repr((self.rules, self.default_text)).encode()).hexdigest()[:16]
        return {"backend": "scripted", "name": self.name, "rules": digest}

    def _wait(self) -> None:
        if self.delay:
            time.sleep(self.delay)

    def _rule(self, prompt: str) -> dict[str, Any]:
        def hit(c: str | list[str]) -> bool:
            return c in prompt if isinstance(c, str) else all(x in prompt for x in c)

        return next((r for r in self.rules if hit(r.get("contains", ""))), {})

    def option_distribution(self, requests: Sequence[OptionRequest]) -> list[OptionResult]:
        out = []
        for r in requests:
            self.calls += 1
            self._wait()
            prompt = _prompt(r.messages, r.prefill)
            probs = self._rule(prompt).get("probs")
            if probs is None:
                w = [0.05 + _hash01(prompt, i) for i in range(len(r.labels))]
                probs = [x / sum(w) for x in w]
            if not isinstance(probs, list) or len(probs) != len(r.labels):
                probs = probs if isinstance(probs, list) else [probs]
                raise ValueLensError(f"scripted backend {self.name}: rule gives {len(probs)} probs for {len(r.labels)} options")
            # As given: the model interface validates and renormalises (CachedModel).
            out.append(OptionResult(tuple(probs), 1.0))
        return out

    def generate(self, items: Sequence[tuple[GenerateRequest, int]]) -> list[str]:
        out = []
        for r, j in items:
            self.calls += 1
            self._wait()
            rule = self._rule(_prompt(r.messages, r.prefill))
            text = rule.get("text", self.default_text)
            if r.settings.temperature > 0 and "texts" in rule:
                texts = rule["texts"]
                text = texts[sample_seed(r.settings.seed, j) % len(texts)]
            out.append(text)
        return out

    def close(self) -> None:
        pass
