"""Batched, batch-invariant generation in the hf backend (tiny random model).

The reference is the old path (:meth:`HFBackend._sample_alone`): one request
at a time through ``model.generate(do_sample=True)`` under
``torch.manual_seed(sample_seed(seed, j))`` — transformers' own sampler.
"""

from __future__ import annotations

import random
from dataclasses import asdict, replace

import pytest
import torch

from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, Message
from valuelens.models.hf import HFBackend
from valuelens.store import Store

PROMPTS = [
    "How would someone from China answer the following question: Is it?",
    "Here are the options: (A) yes (B) no (C) maybe (D) never",
    "How would someone from United States answer the following question:\n\nIs it a question that is much longer "
    "than the others, with more words in it?\n(A) yes (B) no (C) maybe\n",
    "Answer: A",
    "来自中国的人会如何回答以下问题",
    "the a an of to in is it " * 6,
]


def _items(max_tokens: int = 20, stop: tuple[str, ...] = ()) -> list[tuple[GenerateRequest, int]]:
    """Sampled requests: different prompts (so padding), temperatures, top-p, seeds and sample indices."""
    out = []
    for k in range(12):
        st = GenerateSettings(temperature=(0.6, 1.0, 1.4)[k % 3], top_p=(1.0, 0.9, 0.5, 0.95)[k % 4],
                              max_tokens=max_tokens, seed=100 + k // 2, stop=stop)
        out.append((GenerateRequest((Message("user", PROMPTS[k % len(PROMPTS)]),), st), k % 3))
    return out


def _backend(model_dir, batch_size: int) -> HFBackend:
    """The tiny model with extra EOS tokens, so that rows finish at different steps and leave the batch."""
    b = HFBackend.from_path(model_dir, batch_size=batch_size)
    common = b.tok.convert_tokens_to_ids(list("aeiostn")) + [b.tok.eos_token_id]
    b.model.generation_config.eos_token_id = sorted(set(common))
    return b


def _old_path(b: HFBackend, items) -> list[str]:
    seqs = b._encode([b.render(r.messages, r.prefill) for r, _ in items])
    out: list = [None] * len(items)
    for i in range(len(items)):
        b._sample_alone(i, items, seqs, out)
    return out


def _generate_shuffled(b: HFBackend, items, seed: int) -> list[str]:
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    got = b.generate([items[i] for i in order])
    out: list = [None] * len(items)
    for k, i in enumerate(order):
        out[i] = got[k]
    return out


def test_sampled_texts_do_not_depend_on_the_batch_and_equal_the_old_path(tiny_model_dir):
    items = _items()
    ref = _old_path(_backend(tiny_model_dir, 1), items)
    assert len({len(t) for t in ref}) > 3  # rows end at different steps (EOS): the batch shrinks
    for size, seed in ((1, 0), (3, 1), (8, 2), (8, 3)):
        b = _backend(tiny_model_dir, size)
        assert b._own_sampling() is not None  # the batched loop, not the old path
        assert _generate_shuffled(b, items, seed) == ref, f"batch size {size}, shuffle {seed}"
    # different seeds and indices give different samples (the test is not passing on one constant text)
    assert len(set(ref)) == len(ref)


def test_resumed_run_gives_the_uninterrupted_texts(tiny_model_dir, tmp_path):
    reqs = [r for r, j in _items() if j == 0]
    reqs = [replace(r, n=3) for r in reqs]
    one = CachedModel(_backend(tiny_model_dir, 8), Store(tmp_path / "a.sqlite"), "m", chunk_size=5)
    whole = one.generate(reqs)
    two = CachedModel(_backend(tiny_model_dir, 3), Store(tmp_path / "b.sqlite"), "m", chunk_size=4)
    two.generate(reqs[1::2])  # "killed" after part of the work; then the whole call again
    assert two.generate(reqs) == whole


def test_greedy_rows_equal_transformers_greedy_and_mix_with_sampled_rows(tiny_model_dir):
    b = _backend(tiny_model_dir, 4)
    greedy = [(replace(r, settings=replace(r.settings, temperature=0.0)), 0) for r, _ in _items()[:6]]
    seqs = b._encode([b.render(r.messages, r.prefill) for r, _ in greedy])
    want: list = [None] * len(greedy)
    for i, (r, _) in enumerate(greedy):
        b._gen_batch([i], seqs, want, r.settings, sample=False)  # model.generate(do_sample=False), alone
    sampled = _items()
    mixed = _generate_shuffled(b, greedy + sampled, 4)
    assert mixed[: len(greedy)] == want
    assert mixed[len(greedy):] == _old_path(b, sampled)


def test_stop_strings_cut_the_text_and_save_tokens(tiny_model_dir):
    b = HFBackend.from_path(tiny_model_dir, batch_size=4)  # the model's own EOS: rows run long
    full = b.generate(_items(max_tokens=30))
    stop = ("e", "答")
    got = b.generate(_items(max_tokens=30, stop=stop))
    want = []
    for t in full:
        cuts = [t.find(s) for s in stop if s in t]
        want.append(t[: min(cuts)] if cuts else t)
    assert got == want and any(g != f for g, f in zip(got, full))
    assert b.stats["stop_saved_tokens"] > 0 and b.stats["stopped_early"] == sum(g != f for g, f in zip(got, full))
    assert b.stats["generated_tokens"] == 12 * 30 * 2 - b.stats["stop_saved_tokens"]
    # beam search (model.generate) is cut the same way
    beam = GenerateRequest((Message("user", PROMPTS[1]),), GenerateSettings(num_beams=2, max_tokens=12))
    cut = b.generate([(replace(beam, settings=replace(beam.settings, stop=stop)), 0)])[0]
    whole = b.generate([(beam, 0)])[0]
    assert whole.startswith(cut) and not any(s in cut for s in stop)


def test_cache_key_without_stop_is_unchanged():
    st = GenerateSettings(temperature=0.5, top_p=0.9, max_tokens=10, seed=3)
    req = GenerateRequest((Message("user", "hi"),), st)
    # the settings dict as it was before ``stop`` existed: the keys of stored samples still match
    assert req.sample_json(2)["settings"] == {"temperature": 0.5, "top_p": 0.9, "num_beams": 1, "max_tokens": 10,
                                              "seed": 3}
    plain = {k: v for k, v in asdict(st).items() if k not in ("stop", "stop_at")}
    assert replace(st, stop=("\n",)).to_json() == {**plain, "stop": ["\n"]}
    assert replace(st, stop_at="json").to_json() == {**plain, "stop_at": "json"}  # a stop rule is in the key
    for bad in ("\n", ("",), (1,)):
        with pytest.raises(ValueError, match="stop"):
            GenerateSettings(stop=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stop_at must be one of def_answer, json"):
        GenerateSettings(stop_at="sentence")


def test_beam_sampling_is_batched_by_settings_and_gives_the_old_texts(tiny_model_dir, monkeypatch):
    """Beam-sampled requests with equal settings share a model.generate call, each row drawing from its own
    generator: the texts of the old path (each request alone under torch.manual_seed), whatever the batch."""
    base = _items()[:6]
    # two settings groups of three requests each (same beams, temperature, top-p and length within a group)
    beams = [(replace(r, settings=replace(r.settings, num_beams=(2, 3)[k % 2], temperature=(0.8, 1.3)[k % 2],
                                          top_p=1.0)), j) for k, (r, j) in enumerate(base)]
    ref = _old_path(_backend(tiny_model_dir, 1), beams)
    assert len(set(ref)) == len(ref)
    calls: list[int] = []
    for size, seed in ((1, 0), (3, 1), (8, 2)):
        b = _backend(tiny_model_dir, size)
        assert b._row_seeded_beams()
        gen_batch = b._gen_batch
        monkeypatch.setattr(b, "_gen_batch", lambda idx, *a, **kw: (calls.append(len(idx)), gen_batch(idx, *a, **kw)))
        assert _generate_shuffled(b, beams, seed) == ref, f"batch size {size}, shuffle {seed}"
    assert calls == [1] * 6 + [3, 3] + [3, 3]  # batched within each settings group, never across


def test_unusual_generation_configs_keep_the_old_path(tiny_model_dir):
    items = _items()[:5]
    # a generation config with a processor the loop does not reproduce: one request at a time, as before
    c = _backend(tiny_model_dir, 3)
    c.model.generation_config.repetition_penalty = 1.3
    assert c._own_sampling() is None
    assert _generate_shuffled(c, items, 6) == _old_path(c, items)
    greedy = [(replace(r, settings=replace(r.settings, temperature=0.0)), 0) for r, _ in items]
    seqs = c._encode([c.render(r.messages, r.prefill) for r, _ in greedy])
    want: list = [None] * len(greedy)
    for i, (r, _) in enumerate(greedy):
        c._gen_batch([i], seqs, want, r.settings, sample=False)  # with the repetition penalty
    assert c.generate(greedy) == want


def test_padding_changes_fp32_logits_only_in_the_last_bits(tiny_model_dir):
    """The bound behind batch invariance: padded and unpadded next-token logits differ by float32
    rounding only; without the attention mask the padding would show (so the check can fail)."""
    b = HFBackend.from_path(tiny_model_dir)
    seqs = b._encode([b.render((Message("user", p),), "") for p in PROMPTS])
    with torch.inference_mode():
        ids, mask, pos = b.pad(seqs)
        padded = b.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
        alone = torch.cat([b.model(input_ids=torch.tensor([s])).logits[:, -1] for s in seqs])
        unmasked = b.model(input_ids=ids, position_ids=pos).logits[:, -1]
    assert len({len(s) for s in seqs}) > 3
    assert float((padded - alone).abs().max()) < 1e-5
    assert float((unmasked - alone).abs().max()) > 1e-3


def test_every_backend_text_is_cut_at_its_stop_strings(tmp_path):
    """CachedModel applies the cut, so a backend that ignores ``stop`` (here scripted) stores the same text."""
    from valuelens.models.scripted import ScriptedBackend

    model = CachedModel(ScriptedBackend(default_text="Answer: 2 Explanation: Yes.\nAnd more."),
                        Store(tmp_path / "s.sqlite"), "m")
    plain = GenerateRequest((Message("user", "q"),))
    cut = replace(plain, settings=replace(plain.settings, stop=("\n", "Yes")))
    assert [g.texts[0] for g in model.generate([plain, cut])] == ["Answer: 2 Explanation: Yes.\nAnd more.",
                                                                 "Answer: 2 Explanation: "]


SYSTEM = ("You are taking part in a survey. Imagine you are a woman aged 30 to 49, living in Ohio, United States. "
          "Answer every question as this person would, choosing exactly one option.")
QUESTIONS = ["Is it a question?\n(A) yes (B) no", "How would someone from China answer the following question:",
             "Here are the options: (A) yes (B) no (C) maybe (D) never"]


def _shared_prefix_items() -> list[tuple[GenerateRequest, int]]:
    """DEF-like: one long persona system turn, a few questions; the same prompt under several seeds (passes)."""
    out = []
    for k in range(10):
        msgs = (Message("system", SYSTEM + (" You live alone." if k % 4 == 3 else "")),
                Message("user", QUESTIONS[k % 3] if k < 7 else QUESTIONS[0]))
        temp = 0.0 if k % 5 == 0 else (0.7, 1.0, 1.3)[k % 3]
        st = GenerateSettings(temperature=temp, top_p=(1.0, 0.9)[k % 2], max_tokens=12, seed=7 + k)
        out.append((GenerateRequest(msgs, st), k % 2))
    return out


def test_prefix_reuse_gives_the_texts_of_the_no_reuse_path(tiny_model_dir):
    """Greedy and sampled rows (their own generators) give, with the shared prefix run once per batch, the texts
    of the plain padded path, whatever the batch size and order; the prefix was really reused."""
    items = _shared_prefix_items()
    plain = _backend(tiny_model_dir, 3)
    plain.prefix_cache = False
    ref = _generate_shuffled(plain, items, 0)
    assert "gen_prefix_saved_tokens" not in plain.stats
    assert len(set(ref)) > 6  # not one constant text
    for size, seed in ((1, 1), (3, 2), (8, 3)):
        b = _backend(tiny_model_dir, size)
        assert _generate_shuffled(b, items, seed) == ref, f"batch size {size}, shuffle {seed}"
        if size > 1:
            assert b.stats["gen_prefix_saved_tokens"] > 20 * len(items)  # most of each prompt not rerun


def test_prefix_reuse_changes_first_step_logits_by_fp32_rounding_only(tiny_model_dir):
    """The bound behind the equality above: next-token logits after a prompt run on a shared prefix's cache
    (padding between prefix and suffix) equal those of the prompt alone up to float32 rounding."""
    from valuelens.models.hf_prefix import PrefixCache, common_prefix

    b = HFBackend.from_path(tiny_model_dir)
    reqs = [r for r, _ in _shared_prefix_items()]
    seqs = b._encode([b.render(r.messages, r.prefill) for r in reqs])
    n = common_prefix(seqs)
    assert n > 30
    with torch.inference_mode():
        prefix = PrefixCache.build(torch, b.model, seqs[0][:n])
        ids, mask, pos = prefix.batch(torch, [s[n:] for s in seqs], b.tok.pad_token_id)
        alone = torch.cat([b.model(input_ids=torch.tensor([s])).logits[:, -1] for s in seqs])

        def gap(mask, pos) -> float:
            out = b.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=prefix.expanded(len(seqs)))
            return float((out.logits[:, -1] - alone).abs().max())

        hidden = mask.clone()
        hidden[:, 1:n] = 0
        # measured 6e-8; a position off by one, or the prefix not attended to, shows (the check can fail)
        assert gap(mask, pos) < 1e-6 < 1e-5 < gap(mask, pos - 1) and gap(hidden, pos) > 1e-3


def test_stop_rule_ends_rows_early_and_keeps_the_text_before_the_cut(tiny_model_dir):
    """With ``stop_at``, each row ends at its first complete answer: its text is the text it writes without the
    rule, cut there (the same draws up to the stop point), and fewer tokens are generated."""
    from valuelens.models import grammar
    from valuelens.models.requests import ResponseFormat, cut_at_stop

    if not grammar.available():
        pytest.skip("the grammar engine (valuelens[grammar]) is not installed")
    # the reply form makes the tiny model write DEF's shape: marker, label, explanation, a sentence end, more
    fmt = ResponseFormat.regex(r"Answer: (1|2) Explanation: [a-z]{1,6}\. [a-z ]{5,40}")
    items = [(replace(r, response_format=fmt), j) for r, j in _shared_prefix_items()]
    ruled = [(replace(r, settings=replace(r.settings, stop_at="def_answer", max_tokens=40)), j) for r, j in items]
    whole = [(replace(r, settings=replace(r.settings, max_tokens=40)), j) for r, j in items]
    a, c = _backend(tiny_model_dir, 4), _backend(tiny_model_dir, 4)
    full = a.generate(whole)
    cut = c.generate(ruled)
    assert cut == [cut_at_stop(t, (), "def_answer") for t in full]
    assert all(t.startswith("Answer: ") and t.endswith(".") for t in cut)
    assert all(len(t) > len(s) for t, s in zip(full, cut))  # every reply went on after its answer
    assert c.stats["stopped_early"] == len(items) and c.stats["generated_tokens"] < a.stats["generated_tokens"]


def _step_logits(b: HFBackend, items) -> dict[int, list]:
    """Each request's next-token logits at every decoding step (one batch, no row leaving it)."""
    calls: list = []
    rows: list = []
    hook = b.model.register_forward_hook(lambda m, a, kw, out: calls.append(out.logits[:, -1].clone()),
                                         with_kwargs=True)
    decode = b._decode
    b._decode = lambda idx, *a, **kw: (rows.append(list(idx)), decode(idx, *a, **kw))[1]  # type: ignore[method-assign]
    try:
        b.generate(items)
    finally:
        hook.remove()
    assert len(rows) == 1 and b.stats["generated_tokens"] == len(items) * items[0][0].settings.max_tokens
    return {i: [c[k] for c in calls[-items[0][0].settings.max_tokens:]] for k, i in enumerate(rows[0])}


def test_prefix_reuse_changes_decoding_logits_by_fp32_rounding_only(tiny_model_dir, monkeypatch):
    """The bound behind the equality above, through the decoding loop itself: at every step, greedy rows'
    logits with the prefix run once equal the plain padded path's up to float32 rounding (measured 6e-8);
    a position off by one shows (the check can fail: the tiny model's texts barely depend on positions)."""
    from valuelens.models import hf_prefix

    items = [(replace(r, settings=replace(r.settings, temperature=0.0, max_tokens=6)), 0)
             for r, _ in _shared_prefix_items()]
    plain = HFBackend.from_path(tiny_model_dir, batch_size=16)
    plain.prefix_cache = False
    want = _step_logits(plain, items)

    def gap() -> float:
        got = _step_logits(HFBackend.from_path(tiny_model_dir, batch_size=16), items)
        return max(float((g - w).abs().max()) for i in want for g, w in zip(got[i], want[i]))

    assert gap() < 1e-6
    batch = hf_prefix.PrefixCache.batch
    monkeypatch.setattr(hf_prefix.PrefixCache, "batch", lambda self, *a: (lambda i, m, p: (i, m, p - 1))(*batch(self, *a)))
    assert gap() > 1e-5
