"""Prompt text, token ids and option-label tokens from a Hugging Face
tokenizer, shared by the backends that tokenize locally (``hf``, ``vllm``),
so both score exactly the same token sequences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from valuelens.errors import ValueLensError


def has_chat_template(tokenizer: Any, use_chat_template: bool | None = None) -> bool:
    """Use the tokenizer's chat template when it has one (unless switched off)."""
    has = bool(getattr(tokenizer, "chat_template", None))
    return has if use_chat_template is None else (bool(use_chat_template) and has)


def render(tokenizer: Any, chat: bool, messages: Sequence[Any], prefill: str) -> str:
    """Chat template with the generation prompt, then the assistant prefill;
    without a template, the turns joined by blank lines, then the prefill."""
    if chat:
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) + prefill
    return "\n\n".join(m.content for m in messages) + prefill


def encode(tokenizer: Any, chat: bool, texts: Sequence[str]) -> list[list[int]]:
    """Token ids; a chat template already holds its special tokens."""
    return [list(tokenizer(t, add_special_tokens=not chat)["input_ids"]) for t in texts]


def count_tokens(tokenizer: Any, chat: bool, messages: Sequence[Any], prefill: str, text: str) -> tuple[int, int]:
    """(prompt tokens as scored: the rendered prompt; the reply's tokens, 0 for an empty reply)."""
    prompt = len(encode(tokenizer, chat, [render(tokenizer, chat, messages, prefill)])[0])
    return prompt, len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


def label_spellings(label: str) -> tuple[str, str]:
    """The two ways an option label can follow the prompt: ``A`` and `` A``."""
    return label, " " + label


def single_token_ids(label: str, encodings: Sequence[Sequence[int]], model_name: str) -> list[int]:
    """The ids of the spellings that are one token (``encodings``: each of
    ``label_spellings(label)`` tokenized), without repeats; an error if none is."""
    ids: list[int] = []
    for enc in encodings:
        if len(enc) == 1 and int(enc[0]) not in ids:
            ids.append(int(enc[0]))
    if not ids:
        raise ValueLensError(f"option label {label!r} is not a single token for model {model_name}; use letters A-J")
    return ids


def label_token_ids(tokenizer: Any, label: str, model_name: str) -> list[int]:
    """The single-token spellings of an option label, by a local tokenizer."""
    return single_token_ids(label, [tokenizer(sp, add_special_tokens=False)["input_ids"]
                                    for sp in label_spellings(label)], model_name)
