"""The store and the caching wrapper: hits, counts, chunked commits."""

from __future__ import annotations

import pytest

from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, Message, OptionRequest
from valuelens.models.scripted import ScriptedBackend
from valuelens.store import Store, call_key


def _reqs(n: int) -> list[OptionRequest]:
    return [OptionRequest((Message("user", f"question {i}"),), ("A", "B", "C")) for i in range(n)]


def test_second_pass_is_served_from_cache(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.begin_run()
    backend = ScriptedBackend()
    model = CachedModel(backend, store, "m", chunk_size=3)
    first = model.option_distribution(_reqs(7))
    assert backend.calls == 7 and model.made == 7 and model.cached == 0
    again = model.option_distribution(_reqs(7))
    assert again == first and backend.calls == 7 and model.cached == 7
    assert store.run_counts() == {"calls_made": 7, "calls_cached": 7}
    assert store.info()["calls"] == 7


def test_duplicate_requests_in_one_call_are_computed_once(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    backend = ScriptedBackend()
    model = CachedModel(backend, store, "m")
    reqs = _reqs(3) + _reqs(3)
    out = model.option_distribution(reqs)
    assert backend.calls == 3 and out[:3] == out[3:]


def test_key_covers_model_prompt_settings_seed_and_sample(tmp_path):
    ident = {"backend": "x", "weights": "1"}
    base = GenerateRequest((Message("user", "hi"),), GenerateSettings(seed=1), n=2)
    keys = {call_key(ident, base.sample_json(0)), call_key(ident, base.sample_json(1)),
            call_key({"backend": "x", "weights": "2"}, base.sample_json(0)),
            call_key(ident, GenerateRequest(base.messages, GenerateSettings(seed=2)).sample_json(0)),
            call_key(ident, GenerateRequest(base.messages, GenerateSettings(seed=1, temperature=0.5)).sample_json(0)),
            call_key(ident, GenerateRequest((Message("user", "hi!"),), GenerateSettings(seed=1)).sample_json(0))}
    assert len(keys) == 6


def test_generate_samples_cached_individually(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    backend = ScriptedBackend([{"contains": "", "texts": ["a", "b", "c", "d", "e"]}])
    model = CachedModel(backend, store, "m")
    req = GenerateRequest((Message("user", "q"),), GenerateSettings(temperature=1.0, seed=3), n=2)
    two = model.generate([req])[0].texts
    more = GenerateRequest(req.messages, req.settings, n=4)
    four = model.generate([more])[0].texts
    assert four[:2] == two and backend.calls == 4  # only samples 2 and 3 were new


class Exploding(ScriptedBackend):
    def __init__(self, fail_after: int):
        super().__init__()
        self.fail_after = fail_after

    def option_distribution(self, requests):
        if self.calls + len(requests) > self.fail_after:
            raise RuntimeError("boom")
        return super().option_distribution(requests)


def test_failure_keeps_committed_chunks_and_resume_counts_each_call_once(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.begin_run()
    with pytest.raises(RuntimeError):
        CachedModel(Exploding(fail_after=5), store, "m", chunk_size=2).option_distribution(_reqs(9))
    assert store.info()["calls"] == 4  # two chunks of two were committed before the failure
    store.close()
    store = Store(path)
    store.begin_run()
    backend = ScriptedBackend()
    out = CachedModel(backend, store, "m", chunk_size=2).option_distribution(_reqs(9))
    assert backend.calls == 5 and len(out) == 9
    runs = store.all_runs()
    assert sum(r["calls_made"] for r in runs) == 9 == store.info()["calls"]
    reference = CachedModel(ScriptedBackend(), Store(tmp_path / "ref.sqlite"), "m").option_distribution(_reqs(9))
    assert out == reference


def test_clear_by_model(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    CachedModel(ScriptedBackend(), store, "a").option_distribution(_reqs(2))
    CachedModel(ScriptedBackend(name="other"), store, "b").option_distribution(_reqs(3))
    assert store.info()["per_model"] == {"a": 2, "b": 3}
    assert store.clear("a") == 2 and store.info()["per_model"] == {"b": 3}
    assert store.clear() == 3 and store.info()["calls"] == 0


def test_each_result_is_validated_once(tmp_path, monkeypatch):
    """Fresh results are checked when computed (not again on the way out); stored hits once when read."""
    import valuelens.models.cached as cached_mod

    seen = []
    real = cached_mod.checked

    def counting(result, n_labels):
        seen.append(result)
        return real(result, n_labels)

    monkeypatch.setattr(cached_mod, "checked", counting)
    store = Store(tmp_path / "s.sqlite")
    model = CachedModel(ScriptedBackend(), store, "m", chunk_size=2)
    first = model.option_distribution(_reqs(5) + _reqs(2))  # 5 distinct, 2 repeated in the same call
    assert len(seen) == 5
    seen.clear()
    mixed = model.option_distribution(_reqs(8))  # 5 hits, 3 fresh
    assert len(seen) == 8 and mixed[:5] == first[:5]
    seen.clear()
    assert model.option_distribution(_reqs(8)) == mixed and len(seen) == 8
