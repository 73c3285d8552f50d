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
    with_stop = replace(st, stop=("\n",)).to_json()
    assert with_stop == {**asdict(st), "stop": ["\n"]}
    for bad in ("\n", ("",), (1,)):
        with pytest.raises(ValueError, match="stop"):
            GenerateSettings(stop=bad)  # type: ignore[arg-type]


def test_beam_sampling_and_unusual_generation_configs_keep_the_old_path(tiny_model_dir):
    items = _items()[:5]
    beams = [(replace(r, settings=replace(r.settings, num_beams=2)), j) for r, j in items]
    b = _backend(tiny_model_dir, 3)
    assert _generate_shuffled(b, beams, 5) == _old_path(b, beams)
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
