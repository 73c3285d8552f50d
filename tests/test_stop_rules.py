"""Stop rules (models.stopping): where a reply's first complete answer ends.

Checked against the parsers that read the replies (DEF's parse_answer, MARK's
extract_json), by hand-worked cuts and by properties over many generated
replies: the cut is a prefix; a rule seen on the growing text (as the hf loop
sees it, token by token) gives the cut of the whole text; the parser reads
the same answer from the cut text as from the whole one.
"""

from __future__ import annotations

import random

import pytest

from valuelens.layers.def_layer.parsing import parse_answer
from valuelens.layers.mark.stages import StageError, extract_json
from valuelens.models import CachedModel, GenerateRequest, GenerateSettings, Message
from valuelens.models.requests import cut_at_stop
from valuelens.models.scripted import ScriptedBackend
from valuelens.models.stopping import stop_point
from valuelens.store import Store


@pytest.mark.parametrize("text, cut", [
    ("Answer: 3 Explanation: I value family. And more words.", "Answer: 3 Explanation: I value family."),
    ("Answer: 3 Explanation: It costs 3.5 dollars! Yes", "Answer: 3 Explanation: It costs 3.5 dollars!"),
    ("Answer: 2\nExplanation: Why not?\nAnswer: 4", "Answer: 2\nExplanation: Why not?"),
    ("答案：2 解释：我喜欢家庭。我也喜欢工作。", "答案：2 解释：我喜欢家庭。"),
    ("答案：2 解释：真的吗！ 是的", "答案：2 解释：真的吗！"),  # full-width ! is ! after NFKC: white space follows
    ("Explanation: first. Answer: 1 Explanation: second. third", "Explanation: first. Answer: 1 Explanation: second."),
    ("Answer: 1 Explanation: . Not a sentence yet. x", "Answer: 1 Explanation: . Not a sentence yet."),
])
def test_def_answer_cuts_by_hand(text, cut):
    assert text[: stop_point("def_answer", text)] == cut


@pytest.mark.parametrize("text", [
    "Answer: 3 Explanation: I value family.",  # the end of the text: the sentence may still go on (3.5)
    "Answer: 3 Explanation: It costs 3.5 dollars",
    "I value family. Answer: 3",  # no explanation marker after the answer
    "Explanation: I value family. More.",  # no answer marker
    "答案：2 解释：真的吗？我",  # full-width ? is ? after NFKC, and no white space follows it
    "",
])
def test_def_answer_does_not_cut_an_unfinished_answer(text):
    assert stop_point("def_answer", text) is None


@pytest.mark.parametrize("text, cut", [
    ('{"a": 1, "b": {"c": "}"}} and then', '{"a": 1, "b": {"c": "}"}}'),
    ('```json\n{"a": [1, 2]}\n```', '```json\n{"a": [1, 2]}'),
    ('<think>{"no": 1}</think> {"yes": 2} more', '<think>{"no": 1}</think> {"yes": 2}'),
    ('Here: {"a": "x\\"}"} rest', 'Here: {"a": "x\\"}"}'),
])
def test_json_cuts_by_hand(text, cut):
    assert text[: stop_point("json", text)] == cut


@pytest.mark.parametrize("text", ['{"a": 1', '<think>{"a": 1} still thinking', '{"a": 1,, "b": 2} {"c": 3}',
                                  '[1, 2]', 'no object'])
def test_json_does_not_cut_without_a_complete_first_object(text):
    assert stop_point("json", text) is None


_WORDS = ["I", "value", "family", "work", "3.5", "e.g.", "really", "it", "is", "good", "为", "家庭", "很", "重要"]
_ENDS = [".", "!", "?", "。", "！", "？", "．", ""]
_SEPS = [" ", " ", " ", "\n", "  ", ""]


def _sentence(r: random.Random) -> str:
    return " ".join(r.choice(_WORDS) for _ in range(r.randint(1, 5))) + r.choice(_ENDS)


def _def_reply(r: random.Random) -> str:
    ans = r.choice(["Answer: ", "Answer:", "答案：", "**Answer:** ", "I think ", ""]) + r.choice(["1", "2", "3", "B"])
    exp = r.choice([" Explanation: ", "\nExplanation:", " 解释：", " Explanation - ", " because "])
    lead = r.choice(["", "Explanation: x. ", "Option 2. "])
    return lead + ans + exp + r.choice(_SEPS).join(_sentence(r) for _ in range(r.randint(1, 4)))


def test_def_answer_properties_over_many_replies():
    r = random.Random(0)
    options = ["Very important", "Rather important", "Not very important", "Not at all important"]
    cuts = 0
    for _ in range(3000):
        text = _def_reply(r)
        k = stop_point("def_answer", text)
        if k is None:
            continue
        cut = text[:k]
        cuts += k < len(text)
        # the hf loop sees the text grow: from the first prefix where the rule fires, every longer prefix
        # cuts to the same text (so the backend's text, cut again by CachedModel, is this cut)
        first = next(n for n in range(len(text) + 1) if stop_point("def_answer", text[:n]) is not None)
        for n in range(first, len(text) + 1):
            assert cut_at_stop(text[:n], (), "def_answer") == cut, (text, n)
        assert cut_at_stop(cut, (), "def_answer") == cut  # cutting twice changes nothing
        whole, part = parse_answer(text, options), parse_answer(cut, options)
        assert (part.status, part.position, part.explanation) == (whole.status, whole.position, whole.explanation), text
    assert cuts > 500  # the property is not passing on texts that are never cut


def test_json_properties_over_many_replies():
    r = random.Random(1)
    cuts = 0
    for _ in range(2000):
        obj = '{"a": %d, "t": "%s", "n": {"x": [%d]}}' % (r.randint(0, 9), r.choice(["}", "{", "q\\\"", "ok"]),
                                                         r.randint(0, 9))
        text = (r.choice(["", "Sure: ", "```json\n", "<think>{\"z\": 0}</think>"]) + obj
                + r.choice(["", "\n```", " and {\"b\": 2}", " trailing words"]))
        k = stop_point("json", text)
        assert k is not None
        cut = text[:k]
        cuts += k < len(text)
        first = next(n for n in range(len(text) + 1) if stop_point("json", text[:n]) is not None)
        for n in range(first, len(text) + 1):
            assert cut_at_stop(text[:n], (), "json") == cut
        assert extract_json(cut) == extract_json(text)
    assert cuts > 500
    with pytest.raises(StageError):
        extract_json('{"a": 1')  # an unfinished object is not an answer (the rule does not cut it either)


def test_every_backend_text_is_cut_at_its_stop_rule(tmp_path):
    """CachedModel applies the rule's cut, so a backend that does not stop early stores the same text."""
    model = CachedModel(ScriptedBackend(default_text="Answer: 2 Explanation: Yes it is. And more."),
                        Store(tmp_path / "s.sqlite"), "m")
    plain = GenerateRequest((Message("user", "q"),))
    ruled = GenerateRequest((Message("user", "q"),), GenerateSettings(stop_at="def_answer"))
    assert [g.texts[0] for g in model.generate([plain, ruled])] == ["Answer: 2 Explanation: Yes it is. And more.",
                                                                   "Answer: 2 Explanation: Yes it is."]
