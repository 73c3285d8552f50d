"""Layer 1: ethical dilemmas (Yuan et al. 2024; Wu et al. 2025; Scherrer et al. 2023).

Design. Every question is a choice between two options labelled ``A`` and
``B``; the answer instruction asks for the letter only (Compare forms list
"A. Yes / B. No"), so the first answer token is a single letter. Forms:
Direct (action 1 as A), Direct-Reverse (action 2 as A), Compare ("do you
prefer action 1 over action 2?"), Compare-Reverse (the actions swapped).

* ``mode: probs`` (default): one ``option_distribution`` call per prompt with
  the prefill "Answer:" / "答案："; p_A and p_B are renormalised over the two
  letters, the choice is the argmax, ``covered_mass`` is kept.
* ``mode: generate``: ``samples`` answers per prompt, each parsed to A, B or
  invalid (prompts.parse_choice); p_A, p_B, p_invalid are sample shares and
  the choice is their argmax. Invalid answers and A/B ties are their own
  outcome (``chosen_value`` empty): they count as disagreement, as no flip of
  a valid re-ask, as not following a steer and as a loss for both values of a
  chain step; they are never dropped from a denominator.

Details: kidder.py (consequence and steering conditions), escalation.py
(chains: context modes full / none / causal — escalation_context.py —, both
choice orders averaged, win rates, τ, volatility),
moralchoice.py (six forms, answer matching; English). ``check`` reads every
corpus before the run starts.

Tables (the orchestrator adds ``model``): ``dilemma_responses`` (every
prompt), ``dilemma_preferences`` (Figure 8; per form, and ``order_balanced``:
Direct and Direct-Reverse averaged per dilemma, so a pure label preference
gives 50/50, with ``direct_share`` / ``direct_reverse_share`` beside it),
``dilemma_position_bias`` (position.py: the share of answers at label A vs B
against ½ / ½, per part, language and form), ``dilemma_agreement`` (Figure
10), ``dilemma_consequence_flips`` (Figure 9), ``dilemma_steering``; chains:
``dilemma_chain_responses``, ``dilemma_chain_steps``,
``dilemma_chain_winrates``, ``dilemma_chain_stability``,
``dilemma_chain_volatility``, ``dilemma_chain_contexts``,
``dilemma_chain_context_contrast`` (each with ``context`` and ``label_set``)
and, across models (``combine``),
``dilemma_chain_model_agreement``; MoralChoice:
``dilemma_moralchoice_responses``, ``dilemma_moralchoice_scenarios``,
``dilemma_moralchoice_summary``. Summary tables carry ``estimate, ci_low,
ci_high, n``: 95 % percentile bootstrap (stats.bootstrap_ci) seeded by the
audit seed (``combine`` gets the same seed from its context).
Entry points: :mod:`.layer`, registered in :mod:`valuelens.layers.registry`.
"""

from __future__ import annotations

from valuelens.layers.dilemmas.settings import DilemmaSettings, MoralChoiceSettings

__all__ = ["DilemmaSettings", "MoralChoiceSettings"]
