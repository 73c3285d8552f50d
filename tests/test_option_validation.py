"""Option results are validated at the model interface (issue 14.5): NaN,
negative, non-numeric, oversized or wrongly sized probabilities are an error
naming the model and the prompt, never a number; raw masses are renormalised
with the covered mass recorded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from valuelens.errors import ValueLensError
from valuelens.models import CachedModel, Message, OptionRequest, OptionResult
from valuelens.models.requests import checked
from valuelens.store import Store

REQ = OptionRequest((Message("user", "Which of the options do you choose today?"),), ("A", "B", "C", "D"), "(")


class Fixed:
    """A backend that returns the given result for every request."""

    supports_beams = False

    def __init__(self, result):
        self.result, self.stats, self.calls = result, {}, 0

    def identity(self):
        return {"backend": "fixed", "result": repr(self.result)}

    def option_distribution(self, requests):
        self.calls += len(requests)
        return [self.result for _ in requests]

    def generate(self, items):
        return ["" for _ in items]

    def close(self):
        pass


def model(tmp_path, result) -> CachedModel:
    return CachedModel(Fixed(result), Store(tmp_path / "store.sqlite"), "m")


@pytest.mark.parametrize("result, reason", [
    (OptionResult((math.nan, 0.2, 0.3, 0.5), 1.0), "nan"),
    (OptionResult((0.25, 0.25, math.inf, 0.25), 1.0), "inf"),
    (OptionResult((5.0, 5.0, 5.0, 5.0), 1.0), "sum to 20"),
    (OptionResult((0.6, 0.6, 0.6, 0.6), 1.0), "sum to 2.4"),
    (OptionResult((-0.1, 0.5, 0.3, 0.3), 1.0), "-0.1"),
    (OptionResult(("0.25", 0.25, 0.25, 0.25), 1.0), "'0.25'"),
    (OptionResult((True, 0.0, 0.0, 0.0), 1.0), "True"),
    (OptionResult((0.5, 0.5), 1.0), "expected 4 probabilities, got 2"),
    (OptionResult((0.0, 0.0, 0.0, 0.0), 1.0), "all zero"),
    (OptionResult((0.25,) * 4, math.nan), "covered mass nan"),
    (OptionResult((0.25,) * 4, 2.4), "covered mass 2.4"),
    (OptionResult(None, 0.7), "no probabilities"),
    ({"probs": [1, 0, 0, 0]}, "expected an OptionResult"),
])
def test_invalid_results_are_errors_naming_model_and_prompt(tmp_path, result, reason):
    m = model(tmp_path, result)
    with pytest.raises(ValueLensError) as err:
        m.option_distribution([REQ])
    msg = str(err.value)
    assert "model m" in msg and "Which of the options" in msg and reason in msg and "\n" not in msg
    assert m.store.info()["calls"] == 0  # nothing invalid was stored


def test_nan_is_never_read_as_option_a(tmp_path):
    """The defect: argmax over NaN is index 0, which faked a first-option bias."""
    assert int(np.argmax([math.nan, 0.1, 0.2, 0.7])) == 0
    with pytest.raises(ValueLensError, match="nan"):
        model(tmp_path, OptionResult((math.nan, 0.1, 0.2, 0.7), 1.0)).option_distribution([REQ])


def test_raw_masses_are_renormalised_with_covered_mass(tmp_path):
    m = model(tmp_path, OptionResult((0.1, 0.2, 0.1, 0.0), 1.0))  # sums to 0.4: raw label masses
    (r,) = m.option_distribution([REQ])
    assert r.probs == pytest.approx((0.25, 0.5, 0.25, 0.0)) and r.covered_mass == pytest.approx(0.4)
    (again,) = m.option_distribution([REQ])  # from the store: the same validated result
    assert again == r and m.backend.calls == 1


def test_checked_keeps_valid_results_and_rounding():
    ok = OptionResult((0.2, 0.3, 0.5), 0.9)
    assert checked(ok, 3) is ok
    assert checked(OptionResult((0.2, 0.3, 0.5), 1.00005), 3).covered_mass == 1.0
    assert checked(OptionResult((1, 0, 0), 1.0), 3).probs == (1.0, 0.0, 0.0)
    assert checked(OptionResult(None, 0.0), 3) == OptionResult(None, 0.0)
    assert checked(OptionResult.failed("too long"), 3).failure == "too long"  # a failure survives the check
    # from_mass no longer clips a sum above 1: the check refuses it
    assert OptionResult.from_mass([0.8, 0.8, 0.8]).covered_mass == pytest.approx(2.4)
    with pytest.raises(ValueError, match="covered mass"):
        checked(OptionResult.from_mass([0.8, 0.8, 0.8]), 3)
    assert OptionResult.from_mass([0.5, 0.50001]).covered_mass == 1.0


def test_backend_returning_wrong_number_of_results(tmp_path):
    class Short(Fixed):
        def option_distribution(self, requests):
            return []

    m = CachedModel(Short(None), Store(tmp_path / "s.sqlite"), "m")
    with pytest.raises(ValueLensError, match="returned 0 option results for 1 requests"):
        m.option_distribution([REQ])


def test_scripted_probs_outside_a_distribution_are_refused(tmp_path):
    import json

    from valuelens.models.scripted import ScriptedBackend

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"rules": [{"contains": "today", "probs": [5, 5, 5, 5]}]}))
    m = CachedModel(ScriptedBackend.from_file(path), Store(tmp_path / "s.sqlite"), "m")
    with pytest.raises(ValueLensError, match="sum to 20"):
        m.option_distribution([REQ])
