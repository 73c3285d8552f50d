"""Adaptive concurrency of the openai backend (issue 20.7)."""

from __future__ import annotations

import asyncio
import json

import pytest
from fake_openai_server import FakeOpenAIServer, top_k

from valuelens import api
from valuelens.models.openai_api import AdaptiveLimit, OpenAIBackend
from valuelens.models.requests import Message, OptionRequest

LABELS = ("A", "B", "C", "D", "E")


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_halve_once_per_burst_recover_additively():
    clock = Clock()
    lim = AdaptiveLimit(8, clock)

    async def go():
        lim.bind()
        epochs = [await lim.acquire() for _ in range(8)]
        assert lim.in_flight == 8
        for e in epochs[:5]:  # a burst of five 429s from requests sent together: one halving
            lim.outcome(e, "throttled")
            await lim.release()
        assert lim.limit == 4 and lim.epoch == 1
        e = await lim.acquire()  # sent after the halving: its 429 halves again
        lim.outcome(e, "throttled")
        await lim.release()
        assert lim.limit == 2
        for e in epochs[5:]:
            await lim.release()
        # recovery: +1 after `limit` successes in a row, up to the maximum, never above
        clock.t += 1
        for _ in range(2 + 3 + 4 + 5 + 6 + 7 + 20):
            e = await lim.acquire()
            lim.outcome(e, "ok")
            await lim.release()
        assert lim.limit == 8
        lim.outcome(lim.epoch, "other")  # other faults change nothing
        assert lim.limit == 8
        for _ in range(10):  # never below 1
            lim.outcome(lim.epoch, "throttled")
        assert lim.limit == 1
    asyncio.run(go())
    whys = [h["why"] for h in lim.history]
    assert whys[:3] == ["start", "throttled", "throttled"] and whys.count("recovered") == 6
    assert [h["limit"] for h in lim.history][:4] == [8, 4, 2, 3]
    s = lim.summary()
    assert s["max"] == 8 and s["lowest"] == 1 and s["final"] == 1 and s["changes"] == len(lim.history) - 1


def test_retry_after_holds_every_new_request():
    lim = AdaptiveLimit(4)

    async def go():
        lim.bind()
        e = await lim.acquire()
        lim.outcome(e, "throttled", retry_after=0.2)
        await lim.release()
        t0 = asyncio.get_running_loop().time()
        await lim.acquire()  # a free slot, but the Retry-After has not passed
        return asyncio.get_running_loop().time() - t0
    assert 0.18 <= asyncio.run(go()) < 1.0


def opt(i: int) -> OptionRequest:
    return OptionRequest((Message("user", f"question {i}"),), LABELS)


def test_server_at_capacity_halves_then_recovers(tmp_path):
    """A server that 429s beyond 3 requests in flight: the backend (max 12) comes down to it, every
    answer is right, and the history shows the halvings and the recovery."""
    with FakeOpenAIServer(capacity=3, delay=0.03, max_requests=100_000) as srv:
        b = OpenAIBackend(model="m", base_url=srv.url, max_concurrency=12, max_retries=30, backoff_base=0.005,
                          backoff_max=0.05, timeout=10)
        res = b.option_distribution([opt(i) for i in range(60)])
        throttled = srv.throttled
    for i, r in enumerate(res):
        mass = [sum(2.718281828459045 ** v for t, v in top_k(f"question {i}", 20) if t.strip() == lab)
                for lab in LABELS]
        assert r.probs == pytest.approx([m / sum(mass) for m in mass], rel=1e-9)
    c = b.concurrency
    whys = [h["why"] for h in c["history"]]
    assert throttled > 0 and b.stats["http_429"] == throttled
    assert c["max"] == 12 and c["lowest"] <= 3 and "throttled" in whys and "recovered" in whys
    assert all(1 <= h["limit"] <= 12 for h in c["history"])
    # halving once per burst: the first burst (up to 9 429s at once) costs one halving, not nine
    assert [h["limit"] for h in c["history"][:2]] == [12, 6]


def test_retry_after_from_the_server_pauses_new_requests():
    """One 429 with Retry-After 0.4 s while three slow requests are in flight: no later request starts
    before it has passed (before: the freed slots sent them at once)."""
    with FakeOpenAIServer(faults=["http_429_retry_after"], retry_after="0.4", delay=0.15) as srv:
        b = OpenAIBackend(model="m", base_url=srv.url, max_concurrency=4, max_retries=3, backoff_base=0.001,
                          backoff_max=5, timeout=10)
        b.option_distribution([opt(i) for i in range(8)])
        reqs = list(srv.requests)
    first = reqs[0]
    assert first["fault"] == "http_429_retry_after"
    later = reqs[4:]
    assert len(later) == 5 and all(r["start"] >= first["end"] + 0.35 for r in later), \
        [round(r["start"] - first["end"], 3) for r in later]


def test_history_is_in_run_json(tmp_path):
    out = tmp_path / "out"
    with FakeOpenAIServer() as srv:
        path = tmp_path / "a.yaml"
        path.write_text(f"""\
name: conc
output_dir: {out}
languages: [en]
models:
  - {{name: api, backend: "openai:m@{srv.url}", options: {{max_concurrency: 5}}}}
layers:
  first_token: {{limit: 1}}
""", encoding="utf-8")
        api.run_full(path)
    rec = json.loads((out / "run.json").read_text())["models"][0]
    assert rec["concurrency"]["max"] == 5 and rec["concurrency"]["history"][0] == {"t": 0.0, "limit": 5,
                                                                                   "why": "start"}
