"""The hf backend against direct transformers computations on a tiny model."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from valuelens.errors import ValueLensError
from valuelens.models import GenerateRequest, GenerateSettings, Message, OptionRequest
from valuelens.models.hf import HFBackend

PROMPTS = [
    "How would someone from China answer the following question:\n\nIs it?\nHere are the options: \n(A)yes\n(B)no\n",
    "Here are the options: (A) yes (B) no (C) maybe (D) never",
    "How would someone from United States answer the following question:\n\nIs it a question that is much longer than the others, with more words in it?\n(A) yes (B) no (C) maybe\n",
]
PREFILL = "If had to select one of the options, my answer would be ("


def _direct(model_dir, text: str, labels, add_special: bool):
    """Independent computation: unpadded forward, full-vocab softmax, sum of
    the label spellings' probabilities, renormalised."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tok(text, add_special_tokens=add_special, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(ids).logits[0, -1].double(), -1)
    mass = []
    for lab in labels:
        spell = {t[0] for t in (tok.encode(lab, add_special_tokens=False), tok.encode(" " + lab, add_special_tokens=False))
                 if len(t) == 1}
        mass.append(sum(float(probs[i]) for i in spell))
    return [m / sum(mass) for m in mass], sum(mass)


@pytest.mark.parametrize("chat", [True, False])
def test_option_distribution_equals_direct_softmax(tiny_model_dir, tiny_base_model_dir, chat):
    model_dir = tiny_model_dir if chat else tiny_base_model_dir
    backend = HFBackend.from_path(model_dir, batch_size=2)  # batches of 2 force left padding
    labels = [("A", "B"), ("A", "B", "C", "D"), ("A", "B", "C")]
    reqs = [OptionRequest((Message("user", p),), lab, PREFILL) for p, lab in zip(PROMPTS, labels)]
    got = backend.option_distribution(reqs)
    for req, res in zip(reqs, got):
        text = backend.render(req.messages, req.prefill)
        assert text.endswith(PREFILL)
        if chat:
            assert text.startswith("<|im_start|>user\n") and "<|im_start|>assistant\n" + PREFILL in text
        want, covered = _direct(model_dir, text, req.labels, add_special=not chat)
        assert res.probs is not None and len(res.probs) == len(req.labels)
        assert max(abs(a - b) for a, b in zip(res.probs, want)) < 1e-6
        assert abs(res.covered_mass - covered) < 1e-6
        assert 0 < res.covered_mass < 1


def test_batched_equals_one_at_a_time(tiny_model_dir):
    reqs = [OptionRequest((Message("user", p),), ("A", "B"), PREFILL) for p in PROMPTS]
    batched = HFBackend.from_path(tiny_model_dir, batch_size=3).option_distribution(reqs)
    single = HFBackend.from_path(tiny_model_dir, batch_size=1).option_distribution(reqs)
    for a, b in zip(batched, single):
        assert max(abs(x - y) for x, y in zip(a.probs, b.probs)) < 1e-5


def test_label_that_is_not_one_token_is_an_error(tiny_model_dir):
    backend = HFBackend.from_path(tiny_model_dir)
    with pytest.raises(ValueLensError, match="not a single token"):
        backend.option_distribution([OptionRequest((Message("user", "x"),), ("A", "maybe-not-a-token"))])


def test_generate_greedy_batch_invariant_and_sampling_seeded(tiny_model_dir):
    backend = HFBackend.from_path(tiny_model_dir, batch_size=3)
    greedy = [GenerateRequest((Message("user", p),), GenerateSettings(max_tokens=8)) for p in PROMPTS]
    batched = backend.generate([(r, 0) for r in greedy])
    alone = [backend.generate([(r, 0)])[0] for r in greedy]
    assert batched == alone and all(isinstance(t, str) for t in batched)
    sampled = GenerateRequest((Message("user", PROMPTS[0]),), GenerateSettings(temperature=1.0, max_tokens=12, seed=7))
    first = backend.generate([(sampled, 0), (sampled, 1), (sampled, 2)])
    again = backend.generate([(sampled, 2), (sampled, 0)])
    assert again == [first[2], first[0]]  # a sample depends on its seed and index, not on its batch
    assert len(set(first)) > 1


def test_beam_search_runs(tiny_model_dir):
    backend = HFBackend.from_path(tiny_model_dir)
    req = GenerateRequest((Message("user", PROMPTS[1]),), GenerateSettings(num_beams=3, max_tokens=5))
    beam = backend.generate([(req, 0)])
    sampled_beam = GenerateRequest(req.messages, GenerateSettings(num_beams=2, temperature=0.8, max_tokens=5, seed=1))
    assert len(beam) == 1 and len(backend.generate([(sampled_beam, 0)])) == 1


def test_identity_follows_the_weights(tiny_model_dir, tmp_path):
    a = HFBackend.from_path(tiny_model_dir).identity()
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert HFBackend.from_path(copy).identity() == a
    from tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "other", seed=5)
    assert HFBackend.from_path(other).identity() != a


def test_bad_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueLensError, match="not a directory"):
        HFBackend.from_path(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueLensError, match="cannot load"):
        HFBackend.from_path(tmp_path / "empty")


def test_device_option_reaches_the_backend(tiny_model_dir):
    """`options: {device: cpu}` goes through the registry; on the CPU the
    identity (so every cache key) is what it was before devices existed."""
    from valuelens.models.registry import load_backend

    b = load_backend(f"hf:{tiny_model_dir}", device="cpu")
    assert b.device.type == "cpu"
    assert "device" not in b.identity()
    assert set(b.identity()) == {"backend", "weights", "dtype", "chat_template"}
