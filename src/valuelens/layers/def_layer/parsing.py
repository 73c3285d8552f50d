"""DEF answer parsing: "Answer: <n> Explanation: <text>" in English and Chinese.

Order of checks: empty → refusal (anywhere in the reply) → hedge ("some …
others", "有些人…有些人") → the integer after the answer marker ("Answer:",
"答案：", "回答：") within 1..k → with several numbers, or a number out of
range, or no number: a unique option-text match in the answer part. Without a
marker a reply is accepted only when it starts with a number ("3. ..."),
"option 3"/"选项3"/"第3", or names exactly one option in its first line.
A number that contradicts a unique (non-numeric) option text next to it, or a
reply that is a numbered list (the options echoed back), is ``ambiguous``.
Everything that is not ``valid`` is an invalid outcome and is kept.

Letter-labelled questions (numeric scales whose numbers are not their
positions, see :mod:`.prompts`): the upper-case letter after the marker (or
leading the reply), a bare number read as a scale value (``values``) and the
option texts must all point to one option, else ``ambiguous``; a letter
beyond the options is ``out_of_range``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# The answer and explanation markers are the ``def_answer`` stop rule's (one definition for both).
from valuelens.models.stopping import ANSWER, EXPLANATION

STATUSES = ("valid", "empty", "refusal", "hedge", "ambiguous", "out_of_range", "unparsed")

REFUSAL = re.compile(
    r"\bas an? (?:ai|a\.i\.|artificial intelligence|(?:large )?language model|llm|ai (?:language )?model|ai assistant)\b"
    r"|\bi(?:'m| am) (?:just |only )?an? (?:ai|artificial intelligence|(?:large )?language model|ai assistant)\b"
    r"|\bi (?:do not|don't|cannot|can't) (?:have|hold|form) (?:any )?(?:personal |my own )"
    r"(?:opinions?|beliefs?|views?|feelings?|preferences?|experiences?)"
    r"|\bi(?: am|'m) (?:not able|unable) to (?:provide|express|share|have) (?:a |any )?(?:personal|opinions?|my own)"
    r"|\bi (?:cannot|can't|can not) (?:provide|express|share|give) (?:a |any )?(?:personal|my own|opinions?)"
    r"|作为(?:一[个名款种])?(?:人工智能|ai|语言模型|大型语言模型|大语言模型|智能助手)"
    r"|我(?:只)?是(?:一[个名款种])?(?:人工智能|ai|语言模型|大型语言模型|智能助手)"
    r"|我(?:并)?没有(?:任何)?个人(?:的)?(?:观点|意见|看法|信仰|感情|情感|偏好|立场|经历)"
    r"|我(?:不能|无法|不会)(?:提供|表达|分享|给出)(?:任何)?(?:个人|我自己)",
    re.I,
)
HEDGE = re.compile(
    r"\bsome\s+(?:people|persons|individuals|respondents|citizens|americans|chinese|of (?:us|them)|might|may|would|"
    r"could|believe|think|feel|say|argue|prefer|find|see|value)\b[^\n]{0,240}?\b(?:others|other people)\b"
    r"|(?:有些人|有的人|一些人|部分人|(?<![所没])有人)[^\n]{0,120}?(?:有些人|有的人|另一些人|另外一些人|其他人|另一部分人|(?<![所没])有人)",
    re.I,
)
LEAD_NUMBER = re.compile(r"^\s*[\(\[]?\s*(?:option\s*:?\s*|选项\s*:?\s*|第\s*)?(\d{1,3})(?!\d|\.\d)", re.I)
LEAD_LETTER = re.compile(r"^\s*[\(\[]?\s*(?:(?i:option)\s*:?\s*|选项\s*:?\s*)?([A-Z])(?![A-Za-z0-9])")
LEAD_LETTER_STRICT = re.compile(r"^\s*[\(\[]?\s*(?:(?i:option)\s*:?\s*|选项\s*:?\s*)?([A-Z])\s*(?:[.):\]]|$)")
NUMBER = re.compile(r"(?<![\d.])(\d{1,3})(?![\d]|\.\d)")
ZH_DIGITS = {c: i for i, c in enumerate("一二三四五六七八九十", start=1)}
ZH_NUMBER = re.compile(r"^\s*(?:选项|第)?([一二三四五六七八九十])(?![一二三四五六七八九十])")
SENTENCE = re.compile(r"^(.+?(?:[.!?](?=\s|$)|[。！？]))", re.S)


@dataclass(frozen=True)
class Parsed:
    status: str
    position: int | None  # 0-based index in the options as shown, when valid
    explanation: str  # first sentence of the explanation ("" when none)

    @property
    def valid(self) -> bool:
        return self.status == "valid"


def first_sentence(text: str, limit: int = 240) -> str:
    t = " ".join(text.split()).lstrip("*:-–— ")
    m = SENTENCE.match(t)
    return (m.group(1) if m else t)[:limit].strip()


def _option_matches(segment: str, options: Sequence[str]) -> set[int]:
    """Options whose text occurs in ``segment``; a match inside a longer matched option is dropped."""
    seg = segment.casefold()
    spans: list[tuple[int, int, int]] = []
    for i, opt in enumerate(options):
        t = unicodedata.normalize("NFKC", opt).casefold().strip()
        if not t:
            continue
        pat = re.escape(t)
        if t[0].isascii() and t[0].isalnum():
            pat = r"(?<![a-z0-9])" + pat
        if t[-1].isascii() and t[-1].isalnum():
            pat += r"(?![a-z0-9])"
        spans += [(m.start(), m.end(), i) for m in re.finditer(pat, seg)]
    keep = {i for s, e, i in spans
            if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in spans)}
    return keep


def _pick(segment: str, options: Sequence[str], numbers: list[int]) -> tuple[str, int | None]:
    k = len(options)
    distinct = sorted(set(numbers))
    by_text = _option_matches(segment, options)
    if len(distinct) == 1 and 1 <= distinct[0] <= k:
        words = {i for i in by_text if not options[i].strip().isdigit()}
        if len(words) == 1 and words != {distinct[0] - 1}:
            return "ambiguous", None  # "Answer: 1. <text of another option>"
        return "valid", distinct[0] - 1
    if len(by_text) == 1:
        return "valid", by_text.pop()
    if len(distinct) > 1 or len(by_text) > 1:
        return "ambiguous", None
    if distinct:
        return "out_of_range", None
    return "unparsed", None


def _own_value(text: str) -> int | None:
    t = unicodedata.normalize("NFKC", text).strip()
    return int(t) if t.isdecimal() else None


def _pick_letters(segment: str, options: Sequence[str], values: Sequence[int | None] | None,
                  strict: bool) -> tuple[str, int | None]:
    """A letter-labelled reply: its letter, its numbers read as scale values and the option texts it names must
    point to one option. ``strict`` (no answer marker): the letter must stand alone ("B", "B.", "(B)") and only a
    leading number counts. After a marker, "A"/"I" followed by a lower-case word is the article/pronoun."""
    k = len(options)
    m = (LEAD_LETTER_STRICT if strict else LEAD_LETTER).match(segment)
    if m and not strict and m.group(1) in "AI" and re.match(r"\s+[a-z]", segment[m.end():]):
        m = None
    letter = ord(m.group(1)) - ord("A") if m else None
    if letter is not None and letter >= k:
        return "out_of_range", None
    rest = segment[m.end():] if m else segment
    if strict and letter is None:
        lead = LEAD_NUMBER.match(segment)
        numbers = {int(lead.group(1))} if lead else set()
    else:
        numbers = {int(n) for n in NUMBER.findall(rest)}
    if values is not None and len(values) == k:
        vals = list(values)
    else:  # no scale values given: a numeric option text is its own value
        vals = [_own_value(t) for t in options]
    by_value = {i for i, v in enumerate(vals) if v is not None and v in numbers}
    by_text = {i for i in _option_matches(rest, options) if not options[i].strip().isdigit()}
    picked = ({letter} if letter is not None else set()) | by_value | by_text
    if len(picked) == 1:
        return "valid", picked.pop()
    if len(picked) > 1:
        return "ambiguous", None
    return ("out_of_range" if numbers else "unparsed"), None


def parse_answer(reply: str, options: Sequence[str], letters: bool = False,
                 values: Sequence[int | None] | None = None) -> Parsed:
    """Parse one reply against the options as shown (never raises).

    ``letters``: the options were labelled A, B, …; ``values``: per shown
    option the scale value a bare number in the reply stands for (None: none).
    """
    text = unicodedata.normalize("NFKC", reply or "").strip()
    if not text:
        return Parsed("empty", None, "")
    exp = EXPLANATION.search(text)
    explanation = first_sentence(text[exp.end():]) if exp else ""
    if REFUSAL.search(text):
        return Parsed("refusal", None, explanation)
    if HEDGE.search(text):
        return Parsed("hedge", None, explanation)
    marker = ANSWER.search(text)
    if marker:
        after = EXPLANATION.search(text, marker.end())
        segment = text[marker.end(): after.start() if after else len(text)]
        if after is None:
            segment, _, rest = segment.partition("\n")
            explanation = explanation or first_sentence(rest)
        if letters:
            status, pos = _pick_letters(segment, options, values, strict=False)
            return Parsed(status, pos, explanation)
        numbers = [int(n) for n in NUMBER.findall(segment)]
        zh = ZH_NUMBER.match(segment)
        if not numbers and zh:
            numbers = [ZH_DIGITS[zh.group(1)]]
        status, pos = _pick(segment, options, numbers)
        return Parsed(status, pos, explanation)
    head = text[: exp.start()] if exp and exp.start() > 0 else text
    lead_pattern = LEAD_LETTER_STRICT if letters else LEAD_NUMBER
    if sum(1 for ln in head.split("\n") if lead_pattern.match(ln)) >= 2:
        return Parsed("ambiguous", None, explanation)  # a numbered list (often the options echoed back)
    line = head.split("\n", 1)[0]
    if letters:
        lead = LEAD_LETTER_STRICT.match(line)
        if not explanation and lead:
            explanation = first_sentence(line[lead.end():].lstrip(" .):-"))
        status, pos = _pick_letters(line, options, values, strict=True)
        return Parsed(status, pos, explanation)
    lead = LEAD_NUMBER.match(line)
    zh = ZH_NUMBER.match(line)
    numbers = [int(lead.group(1))] if lead else ([ZH_DIGITS[zh.group(1)]] if zh else [])
    if not explanation and lead:
        explanation = first_sentence(line[lead.end():].lstrip(" .):-"))
    status, pos = _pick(line, options, numbers)
    return Parsed(status, pos, explanation)


def parse_verdict(reply: str) -> bool | None:
    """A judge's Yes/No (是/否) → True/False; anything else → None."""
    t = unicodedata.normalize("NFKC", reply or "").strip().lstrip("*\"'“「(").casefold()
    if re.match(r"yes\b", t) or t.startswith(("是", "对", "矛盾", "错误", "相互矛盾")):
        return True
    if re.match(r"no\b", t) or t.startswith(("否", "不", "没有")):
        return False
    return None
