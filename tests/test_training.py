"""First-token KL fine-tuning on the tiny model: learning, the loss formula
against scipy, best-epoch restore, full fine-tuning, seeding, identity,
reloading a checkpoint and resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import entropy

from valuelens.errors import ValueLensError
from valuelens.models import Message, OptionRequest
from valuelens.models.hf import HFBackend
from valuelens.models.hf_training import TrainItem, TrainSettings, load_finetuned, run_digest, train_first_token

PREFILL = "If had to select one of the options, my answer would be ("
TARGET = {"China": (0.8, 0.2), "United States": (0.1, 0.9)}
TRAIN_Q = ["Is it the one?", "Is it in the answer?", "Is an answer to it?", "Is it to the one?", "Is it a yes?"]
VAL_Q = ["Would it be a question?", "Is the option a no?"]


def item(country: str, question: str, human) -> TrainItem:
    user = (f"How would someone from {country} answer the following question:\n\n{question} \n"
            "Here are the options: \n(A)yes\n(B)no\n")
    return TrainItem(OptionRequest((Message("user", user),), ("A", "B"), PREFILL), human)


TRAIN = [item(c, q, h) for c, h in TARGET.items() for q in TRAIN_Q]
VAL = [item(c, q, h) for c, h in TARGET.items() for q in VAL_Q]
# Validation targets opposite to training: validation KL rises, so the best epoch is the first.
VAL_FLIPPED = [item(c, q, h[::-1]) for c, h in TARGET.items() for q in VAL_Q]
LORA = TrainSettings(lr=1e-2, epochs=6, batch_size=4)


class Counter:
    def __init__(self):
        self.n = 0

    def track(self, description, total):
        def advance(k):
            self.n += k
        return advance


def scipy_kl(backend: HFBackend, items: list[TrainItem]) -> list[float]:
    """Independent KL(human ‖ model) from the backend's scored distributions."""
    res = backend.option_distribution([it.request for it in items])
    return [float(entropy(it.human, r.probs)) for it, r in zip(items, res)]


def probs(backend: HFBackend, items: list[TrainItem]) -> np.ndarray:
    return np.array([r.probs for r in backend.option_distribution([it.request for it in items])])


def val_kls(log) -> list[float]:
    return [e["val_kl"] for e in log if "val_kl" in e]


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    backend = HFBackend.from_path(tiny_model_dir)
    base_identity = backend.identity()
    out = tmp_path_factory.mktemp("lora")
    counter = Counter()
    base_probs = probs(backend, TRAIN + VAL)
    result = train_first_token(backend, TRAIN, VAL, LORA, out, progress=counter)
    # the base handle is untouched: same identity, same answers
    assert backend.identity() == base_identity
    np.testing.assert_array_equal(probs(backend, TRAIN + VAL), base_probs)
    return result.backend, base_identity, result, out, counter


def test_lora_learns_and_logs(lora_run):
    backend, _, result, out, counter = lora_run
    losses = [e["loss"] for e in result.log if "loss" in e]
    steps_per_epoch = -(-len(TRAIN) // LORA.batch_size)
    assert len(losses) == LORA.epochs * steps_per_epoch and counter.n == LORA.epochs * len(TRAIN)
    assert np.mean(losses[-steps_per_epoch:]) < 0.8 * np.mean(losses[:steps_per_epoch])
    assert result.val_kl_best < 0.8 * result.val_kl_before
    # log: epoch 0 before training, one val_kl per epoch, StepLR decay per epoch
    vk = val_kls(result.log)
    assert len(vk) == LORA.epochs + 1 and vk[0] == result.val_kl_before
    assert result.val_kl_best == min(vk[1:]) and result.best_epoch == 1 + int(np.argmin(vk[1:]))
    lrs = {e["epoch"]: e["lr"] for e in result.log if "lr" in e}
    assert all(lrs[k] == pytest.approx(LORA.lr * LORA.step_gamma ** (k - 1)) for k in lrs)
    lines = (out / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == result.log
    assert (result.checkpoint / "done").exists() and (result.checkpoint / "adapter_config.json").exists()
    # the scored distributions moved towards the targets
    p = probs(backend, VAL)
    assert p[: len(VAL_Q), 0].mean() > p[len(VAL_Q):, 0].mean()


def test_val_kl_matches_final_backend(lora_run):
    backend, _, result, _, _ = lora_run
    assert np.mean(scipy_kl(backend, VAL)) == pytest.approx(result.val_kl_best, abs=1e-5)


def test_loss_at_step0_equals_scipy_kl(tiny_model_dir, tmp_path):
    settings = TrainSettings(lr=1e-2, epochs=1, batch_size=len(TRAIN))  # one batch holds every item
    fresh = HFBackend.from_path(tiny_model_dir)
    expected_train, expected_val = np.mean(scipy_kl(fresh, TRAIN)), np.mean(scipy_kl(fresh, VAL))
    backend = HFBackend.from_path(tiny_model_dir)
    result = train_first_token(backend, TRAIN, VAL, settings, tmp_path)
    # LoRA's B starts at zero, so step 0 sees the base model (dropout or not)
    assert result.log[1]["step"] == 0 and result.log[1]["loss"] == pytest.approx(expected_train, abs=1e-5)
    assert result.val_kl_before == pytest.approx(expected_val, abs=1e-5)


def test_full_finetuning_restores_best_epoch(tiny_model_dir, tmp_path):
    settings = TrainSettings(method="full", lr=1e-3, epochs=3, batch_size=4)
    base = HFBackend.from_path(tiny_model_dir)
    result = train_first_token(base, TRAIN, VAL_FLIPPED, settings, tmp_path)
    backend = result.backend
    assert backend is not base and base.identity() != backend.identity() and base.finetuned is None
    np.testing.assert_allclose(probs(base, VAL_FLIPPED), probs(HFBackend.from_path(tiny_model_dir), VAL_FLIPPED),
                               atol=1e-6)  # full fine-tuning left the base weights alone
    vk = val_kls(result.log)
    assert result.best_epoch == 1 + int(np.argmin(vk[1:])) and result.best_epoch < settings.epochs
    assert abs(vk[-1] - result.val_kl_best) > 1e-4  # the last epoch is not the one kept
    assert np.mean(scipy_kl(backend, VAL_FLIPPED)) == pytest.approx(result.val_kl_best, abs=1e-5)
    assert (result.checkpoint / "model.safetensors").exists()
    again = load_finetuned(HFBackend.from_path(tiny_model_dir), result.checkpoint).backend
    assert again.identity() == backend.identity()
    np.testing.assert_allclose(probs(again, VAL_FLIPPED), probs(backend, VAL_FLIPPED), atol=1e-5)


def test_same_seed_same_results(lora_run, tiny_model_dir, tmp_path):
    backend, _, result, _, _ = lora_run
    again = train_first_token(HFBackend.from_path(tiny_model_dir), TRAIN, VAL, LORA, tmp_path / "twin")
    twin = again.backend
    assert again.log == result.log and again.best_epoch == result.best_epoch
    np.testing.assert_array_equal(probs(twin, VAL), probs(backend, VAL))
    other = train_first_token(HFBackend.from_path(tiny_model_dir), TRAIN, VAL,
                              LORA.model_copy(update={"seed": 1, "epochs": 1}), tmp_path / "seed1")
    assert val_kls(other.log)[1] != val_kls(result.log)[1]


def test_identity_changes(lora_run):
    backend, base_identity, _, _, _ = lora_run
    identity = backend.identity()
    assert identity["weights"] != base_identity["weights"]
    assert identity == {**base_identity, "weights": run_digest(base_identity["weights"], LORA, TRAIN, VAL)}
    base = base_identity["weights"]
    digests = {run_digest(base, LORA, TRAIN, VAL), run_digest(base, LORA.model_copy(update={"lr": 2e-2}), TRAIN, VAL),
               run_digest(base, LORA, TRAIN[:-1], VAL), run_digest(base, LORA, TRAIN, VAL_FLIPPED),
               run_digest("other", LORA, TRAIN, VAL)}
    assert len(digests) == 5


def test_load_finetuned_reproduces(lora_run, tiny_model_dir, tiny_base_model_dir):
    backend, _, result, _, _ = lora_run
    base = HFBackend.from_path(tiny_model_dir)
    loaded = load_finetuned(base, result.checkpoint)
    fresh = loaded.backend
    assert fresh.identity() == backend.identity() and base.finetuned is None and base.identity() != fresh.identity()
    assert (loaded.best_epoch, loaded.val_kl_best, loaded.log) == (result.best_epoch, result.val_kl_best, result.log)
    np.testing.assert_allclose(probs(fresh, TRAIN + VAL), probs(backend, TRAIN + VAL), atol=1e-5)
    with pytest.raises(ValueLensError, match="already fine-tuned"):
        load_finetuned(fresh, result.checkpoint)
    with pytest.raises(ValueLensError, match="trained on weights"):
        load_finetuned(HFBackend.from_path(tiny_base_model_dir), result.checkpoint)


def test_resume_skips_training(lora_run, tiny_model_dir):
    backend, _, result, out, _ = lora_run
    before = (out / "train_log.jsonl").stat().st_mtime_ns
    counter = Counter()
    resumed = train_first_token(HFBackend.from_path(tiny_model_dir), TRAIN, VAL, LORA, out, progress=counter)
    fresh = resumed.backend
    assert counter.n == 0 and (out / "train_log.jsonl").stat().st_mtime_ns == before
    assert (resumed.checkpoint, resumed.best_epoch, resumed.val_kl_best, resumed.log) == \
        (result.checkpoint, result.best_epoch, result.val_kl_best, result.log)
    assert fresh.identity() == backend.identity()
    np.testing.assert_allclose(probs(fresh, VAL), probs(backend, VAL), atol=1e-5)
    with pytest.raises(ValueLensError, match="different training run"):
        train_first_token(HFBackend.from_path(tiny_model_dir), TRAIN, VAL, LORA.model_copy(update={"lr": 2e-2}), out)


def test_invalid_settings_and_items(tiny_model_dir, tmp_path):
    for bad in ({"lr": 0}, {"epochs": 0}, {"batch_size": 0}, {"lora_dropout": 1.0}, {"method": "qlora"},
                {"target_modules": []}, {"step_gamma": 0}, {"learning_rate": 1e-4}):
        with pytest.raises(ValidationError):
            TrainSettings(**bad)
    with pytest.raises(ValueLensError):
        item("China", "Is it?", (1.0,))
    with pytest.raises(ValueLensError):
        item("China", "Is it?", (-0.5, 1.5))
    assert item("China", "Is it?", (30, 10)).human == (0.75, 0.25)
    backend = HFBackend.from_path(tiny_model_dir)
    identity = backend.identity()
    with pytest.raises(ValueLensError, match="max_length"):
        train_first_token(backend, TRAIN, VAL, TrainSettings(max_length=10), tmp_path)
    assert backend.identity() == identity and not (tmp_path / "checkpoint").exists()
