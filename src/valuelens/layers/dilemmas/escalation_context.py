"""What a chain step's prompt shows of the earlier steps (``escalation.context``).

Every mode starts from the chain's norm and ends with the current step (its
situation, question and two choices, in the given or reversed order) and the
A/B instruction; the first step is the same prompt in every mode, so it is
asked (and cached) once.

* ``none``: the current step alone (the norm, then the step).
* ``full``: the chain as a real conversation (Wu et al.'s condition in which
  the model sees its own earlier decisions): for each earlier step a user turn
  (that step's situation, question and choices in the given order) and an
  assistant turn with the model's own answer, ``Answer: A`` / ``Answer: B``
  for the choice it made there (the order-balanced choice of that step, shown
  at the letter it has in the given order), or a no-answer line when that step
  had no valid choice; then the current step as the last user turn.
* ``causal``: one user turn with a short summary of what happened so far: per
  earlier step its situation and the choice the model made ("You chose: …").

``full`` and ``causal`` depend on the model's earlier answers, so step k is
rendered only after steps 1..k−1 are decided (escalation.run asks the chains
step by step). A resumed run renders the same prompts from the cached earlier
answers, so its requests, and its results, are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from valuelens.data.dilemmas import Chain
from valuelens.layers.dilemmas.prompts import T, Prompt, _options
from valuelens.models import Message

CONTEXTS = ("full", "none", "causal")
DEPENDS_ON_ANSWERS = {"full": True, "none": False, "causal": True}
TEXT = {
    "en": {"chose": "You chose: {c}", "no_choice": "You gave no clear answer.", "no_answer": "Answer: (no clear answer)"},
    "zh": {"chose": "你的选择：{c}", "no_choice": "你没有给出明确的回答。", "no_answer": "答案：（没有明确回答）"},
}


def _step_text(chain: Chain, step: int, lang: str, reverse: bool) -> str:
    t, st = T[lang], chain.steps[step]
    a, b = st.choices[0][lang], st.choices[1][lang]
    if reverse:
        a, b = b, a
    return f"{t['now'].format(s=st.situation[lang])}\n{st.dilemma[lang]}\n{_options(a, b, lang)}"


def _user(chain: Chain, step: int, lang: str, reverse: bool, norm: bool) -> str:
    t = T[lang]
    parts = [t["norm"].format(n=chain.norm[lang])] if norm else []
    return "\n\n".join([*parts, _step_text(chain, step, lang, reverse), t["instruction"]])


def render(mode: str, chain: Chain, step: int, lang: str, reverse: bool,
           earlier: Sequence[int | None] = ()) -> Prompt:
    """The prompt of ``step`` (0-based) in ``mode``; ``earlier[j]`` is the
    model's choice (0 or 1, None = no valid choice) at step j < ``step``
    (needed by ``full`` and ``causal``)."""
    if mode not in CONTEXTS:
        raise ValueError(f"unknown context {mode!r}")
    t, tx = T[lang], TEXT[lang]
    if step == 0 or mode == "none":
        return Prompt((Message("user", _user(chain, step, lang, reverse, norm=True)),), t["prefill"])
    if len(earlier) < step:
        raise ValueError(f"context {mode} at step {step + 1} needs the model's choices at steps 1..{step}")
    if mode == "full":
        msgs: list[Message] = []
        for j in range(step):
            msgs.append(Message("user", _user(chain, j, lang, False, norm=j == 0)))
            c = earlier[j]
            msgs.append(Message("assistant", tx["no_answer"] if c is None else t["answer"].format(label="AB"[c])))
        msgs.append(Message("user", _user(chain, step, lang, reverse, norm=False)))
        return Prompt(tuple(msgs), t["prefill"])
    lines = []
    for j in range(step):
        st, c = chain.steps[j], earlier[j]
        did = tx["no_choice"] if c is None else tx["chose"].format(c=st.choices[c][lang])
        lines.append(f"{j + 1}. {st.situation[lang]} {did}")
    text = "\n\n".join([t["norm"].format(n=chain.norm[lang]), t["so_far"] + "\n" + "\n".join(lines),
                        _step_text(chain, step, lang, reverse), t["instruction"]])
    return Prompt((Message("user", text),), t["prefill"])
