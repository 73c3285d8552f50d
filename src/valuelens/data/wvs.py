"""World Values Survey wave 7: codebook, respondent microdata CSV, human distributions.

Microdata layout (the WVS-7 CSV): ``B_COUNTRY`` (ISO 3166 numeric, or
``B_COUNTRY_ALPHA``), ``Q1``…``Q290``, sex ``Q260`` (1 male, 2 female), age
``Q262`` in years, optional weight ``W_WEIGHT``; negative codes mean missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from valuelens.data.survey import LABELS, HumanDistribution, Question, Survey, read_json
from valuelens.errors import ValueLensError

AGE_GROUPS = ("<=29", "30-49", "50+")
SEX = {1: "male", 2: "female"}
DEMOGRAPHIC_COLUMNS = ("B_COUNTRY", "B_COUNTRY_ALPHA", "Q260", "Q262", "W_WEIGHT")
_RESERVED = {"country", "sex", "age", "age_group", "weight"}
MAX_HEADER_CHARS = 1 << 20

# ISO 3166-1 numeric code, alpha-3 code, name as WVS writes it (909 is WVS's own code).
_TABLE = """8 ALB Albania;12 DZA Algeria;20 AND Andorra;31 AZE Azerbaijan;32 ARG Argentina;36 AUS Australia;
40 AUT Austria;48 BHR Bahrain;50 BGD Bangladesh;51 ARM Armenia;68 BOL Bolivia;70 BIH Bosnia Herzegovina;
76 BRA Brazil;100 BGR Bulgaria;104 MMR Myanmar;112 BLR Belarus;124 CAN Canada;152 CHL Chile;156 CHN China;
158 TWN Taiwan ROC;170 COL Colombia;191 HRV Croatia;196 CYP Cyprus;203 CZE Czechia;208 DNK Denmark;
218 ECU Ecuador;231 ETH Ethiopia;233 EST Estonia;246 FIN Finland;250 FRA France;268 GEO Georgia;
275 PSE Palestine;276 DEU Germany;288 GHA Ghana;300 GRC Greece;320 GTM Guatemala;344 HKG Hong Kong SAR;
348 HUN Hungary;352 ISL Iceland;356 IND India;360 IDN Indonesia;364 IRN Iran;368 IRQ Iraq;380 ITA Italy;
392 JPN Japan;398 KAZ Kazakhstan;400 JOR Jordan;404 KEN Kenya;410 KOR South Korea;414 KWT Kuwait;
417 KGZ Kyrgyzstan;422 LBN Lebanon;428 LVA Latvia;434 LBY Libya;440 LTU Lithuania;446 MAC Macao SAR;
458 MYS Malaysia;462 MDV Maldives;484 MEX Mexico;496 MNG Mongolia;499 MNE Montenegro;504 MAR Morocco;
528 NLD Netherlands;554 NZL New Zealand;558 NIC Nicaragua;566 NGA Nigeria;578 NOR Norway;586 PAK Pakistan;
604 PER Peru;608 PHL Philippines;616 POL Poland;620 PRT Portugal;630 PRI Puerto Rico;634 QAT Qatar;
642 ROU Romania;643 RUS Russia;646 RWA Rwanda;688 SRB Serbia;702 SGP Singapore;703 SVK Slovakia;
704 VNM Vietnam;705 SVN Slovenia;710 ZAF South Africa;716 ZWE Zimbabwe;724 ESP Spain;752 SWE Sweden;
756 CHE Switzerland;762 TJK Tajikistan;764 THA Thailand;788 TUN Tunisia;792 TUR Turkey;804 UKR Ukraine;
807 MKD North Macedonia;818 EGY Egypt;826 GBR Great Britain;840 USA United States;858 URY Uruguay;
862 VEN Venezuela;887 YEM Yemen;909 NIR Northern Ireland"""
COUNTRIES: dict[int, str] = {}
ALPHA: dict[str, int] = {"MOR": 504}  # WVS writes Morocco as MOR
for _entry in _TABLE.replace("\n", "").split(";"):
    _num, _alpha, _name = _entry.split(" ", 2)
    COUNTRIES[int(_num)], ALPHA[_alpha] = _name, int(_num)


def _json(path: str | Path) -> Any:
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise ValueLensError(f"{path}: expected a non-empty JSON object keyed by variable name")
    return raw


def load_codebook(codebook_path: str | Path, metadata_path: str | Path | None = None,
                  adjustments_path: str | Path | None = None) -> dict[str, Question]:
    """Multiple-choice variables with 2–10 non-negative codes, as Questions (options ordered by code).

    ``extra["codes"]`` holds the option codes; ``extra["recode"]`` maps every valid raw
    code to its option code (None = treated as missing), after the optional
    answer-adjustment file (``{"Q56": {"2": "3", "3": "2"}, "Q111": {"3": ""}}``). Text, dimension
    (category) and ordinal (answer_data_type) come from the metadata when given; ordinal defaults to True.
    """
    from valuelens.data.fetch import resolve  # fetched:NAME paths -> the cached files

    codebook_path, metadata_path, adjustments_path = map(resolve, (codebook_path, metadata_path, adjustments_path))
    raw, meta = _json(codebook_path), _json(metadata_path) if metadata_path else {}
    adjust = _json(adjustments_path) if adjustments_path else {}
    out: dict[str, Question] = {}
    for var, entry in raw.items():
        where = f"{codebook_path}: {var}"
        if not isinstance(entry, dict) or not isinstance(entry.get("choices"), dict):
            raise ValueLensError(f"{where}: expected an object with a 'choices' object")
        if entry.get("type") != "multiple_choice":
            continue
        try:
            choices = {int(c): label for c, label in entry["choices"].items()}
        except ValueError:
            continue  # alphabetic codes (e.g. B_COUNTRY_ALPHA): not an answer scale
        if not all(isinstance(v, str) for v in choices.values()):
            raise ValueLensError(f"{where}, field 'choices': labels must be strings")
        recode: dict[int, int | None] = {c: c for c in choices if c >= 0}
        changes = adjust.get(var) or {}
        if not isinstance(changes, dict):
            raise ValueLensError(f"{adjustments_path}: {var}: expected an object of code -> new code")
        for old, new in changes.items():
            try:
                recode[int(old)] = int(str(new)) if str(new).strip() else None
            except ValueError:
                raise ValueLensError(f"{adjustments_path}: {var}, code {old!r}: expected an integer code or ''") from None
        codes = sorted({n for n in recode.values() if n is not None})
        if not 2 <= len(codes) <= len(LABELS):
            continue
        sources = {n: [o for o in sorted(recode) if recode[o] == n] for n in codes}
        labels = tuple(choices.get(n if n in sources[n] else sources[n][0], str(n)) for n in codes)
        m = meta.get(var)
        m = m if isinstance(m, dict) else {}
        text = m.get("question") or entry.get("question") or var
        out[var] = Question(var, {"en": str(text)}, {"en": labels}, str(m.get("category") or ""),
                            m.get("answer_data_type", "ordinal") != "non_ordinal", "wvs7",
                            {"codes": tuple(codes), "recode": recode, "label": str(entry.get("question", ""))})
    if not out:
        raise ValueLensError(f"{codebook_path}: no multiple-choice variables with 2 to {len(LABELS)} answer codes")
    return out


def _numeric(s: pd.Series, col: str, path: Path) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() & s.notna() & (s.astype(str).str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueLensError(f"{_at(path, i, col)}: {s.iloc[i]!r} is not a number")
    return num


def _at(path: Path, i: int, col: str) -> str:
    return f"{path}: row {i + 1} (line {i + 2}), column {col}"


def _fmt(v: Any) -> str:
    """A raw cell for messages: 7.0 -> "7"."""
    return str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v)


def _first_bad(mask: pd.Series) -> int | None:
    hits = np.flatnonzero(mask.to_numpy())
    return int(hits[0]) if len(hits) else None


def _country_key(c: Any) -> str:
    if isinstance(c, (int, np.integer)) or (isinstance(c, str) and c.strip().isdigit()):
        name = COUNTRIES.get(int(c))
    else:
        name = COUNTRIES.get(ALPHA.get(str(c).strip().upper(), -1)) or (str(c) if str(c) in COUNTRIES.values() else None)
    if name is None:
        raise ValueLensError(f"unknown country {c!r}: give a WVS-7 country name, ISO numeric or alpha-3 code")
    return name


def load_microdata(csv_path: str | Path, codebook: dict[str, Question], questions: Sequence[str] | None = None,
                   countries: Iterable[str | int] | None = None) -> pd.DataFrame:
    """Respondents: country, sex, age, age_group, weight, then one column per question (codes, NaN = missing)."""
    path = Path(csv_path)
    try:
        with path.open(encoding="utf-8") as f:
            head = f.readline(MAX_HEADER_CHARS + 1)
        if len(head) > MAX_HEADER_CHARS:  # a WVS-7 header is ~6 KB; do not read a huge first line
            raise ValueLensError(f"{path}: line 1 (the header) is longer than {MAX_HEADER_CHARS} characters")
        sep = ";" if head.count(";") > head.count(",") else ","
        cols = list(pd.read_csv(path, sep=sep, nrows=0).columns)
        ccol = "B_COUNTRY" if "B_COUNTRY" in cols else "B_COUNTRY_ALPHA" if "B_COUNTRY_ALPHA" in cols else None
        if ccol is None:
            raise ValueLensError(f"{path}: no B_COUNTRY (or B_COUNTRY_ALPHA) column")
        if questions is None:
            qs = [c for c in cols if c in codebook and c not in DEMOGRAPHIC_COLUMNS]
        else:
            qs = list(dict.fromkeys(questions))
            for q in qs:
                if q not in codebook:
                    raise ValueLensError(f"{path}: question {q} is not a usable codebook question "
                                         f"(absent, or more than {len(LABELS)} answer codes)")
                if q not in cols:
                    raise ValueLensError(f"{path}: column {q} is missing")
        use = [ccol] + [c for c in ("Q260", "Q262", "W_WEIGHT") if c in cols] + qs
        raw = pd.read_csv(path, sep=sep, usecols=use, keep_default_na=False, na_values=[""], low_memory=False)
    except FileNotFoundError:
        raise ValueLensError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise ValueLensError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as e:
        raise ValueLensError(f"{path}: invalid CSV ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    out = pd.DataFrame(index=raw.index)
    if ccol == "B_COUNTRY":
        out["country"] = _numeric(raw[ccol], ccol, path).map({float(k): v for k, v in COUNTRIES.items()})
    else:
        out["country"] = raw[ccol].astype(str).str.strip().str.upper().map({a: COUNTRIES[n] for a, n in ALPHA.items()})
    if (i := _first_bad(out["country"].isna())) is not None:
        raise ValueLensError(f"{_at(path, i, ccol)}: unknown country code {_fmt(raw[ccol].iloc[i])}")
    sex = _numeric(raw["Q260"], "Q260", path) if "Q260" in raw else pd.Series(np.nan, index=raw.index)
    if (i := _first_bad(sex.ge(0) & ~sex.isin(list(SEX)))) is not None:
        raise ValueLensError(f"{_at(path, i, 'Q260')}: sex code {_fmt(raw['Q260'].iloc[i])} is not 1 or 2")
    out["sex"] = sex.map(SEX)
    age = _numeric(raw["Q262"], "Q262", path) if "Q262" in raw else pd.Series(np.nan, index=raw.index)
    out["age"] = age.where(age >= 0)
    out["age_group"] = pd.cut(out["age"], [0, 30, 50, np.inf], right=False, labels=AGE_GROUPS).astype(object)
    weight = _numeric(raw["W_WEIGHT"], "W_WEIGHT", path) if "W_WEIGHT" in raw else pd.Series(1.0, index=raw.index)
    if (i := _first_bad(~np.isfinite(weight) | (weight < 0))) is not None:
        raise ValueLensError(f"{_at(path, i, 'W_WEIGHT')}: weight must be a finite number >= 0")
    out["weight"] = weight.astype(float)
    answers = {}
    for q in qs:
        vals = _numeric(raw[q], q, path)
        recode = codebook[q].extra["recode"]
        if (i := _first_bad(vals.ge(0) & ~vals.isin(list(recode)))) is not None:
            raise ValueLensError(f"{_at(path, i, q)}: code {_fmt(raw[q].iloc[i])} is not in the codebook")
        answers[q] = vals.map({float(k): np.nan if v is None else float(v) for k, v in recode.items()}).astype(float)
    out = pd.concat([out, pd.DataFrame(answers, index=raw.index)], axis=1)
    if countries is not None:
        keep = {_country_key(c) for c in countries}
        out = out[out["country"].isin(keep)].reset_index(drop=True)
    out.attrs.update(source=str(path), has_weight="W_WEIGHT" in raw)
    return out


def _group_part(col: str, value: Any) -> str:
    return f"{'age' if col == 'age_group' else col}={value}"


def distributions(respondents: pd.DataFrame, codebook: dict[str, Question], by: Sequence[str] = ("country",),
                  weighted: bool = True) -> list[HumanDistribution]:
    """Answer shares per question and cell of ``by`` (first "country"); n = respondents with a valid answer.

    Respondents with a missing answer, or missing sex/age when grouping by them, are left out of that cell.
    """
    by = list(by)
    if not by or by[0] != "country" or any(c not in respondents.columns for c in by):
        raise ValueLensError(f"distributions: 'by' must start with 'country' and name respondent columns, got {by}")
    qs = [c for c in respondents.columns if c in codebook and c not in _RESERVED]
    w = respondents["weight"] if weighted and "weight" in respondents else pd.Series(1.0, index=respondents.index)
    ok = respondents[by].notna().all(axis=1).to_numpy()
    if not ok.any():
        return []
    cells, keys = pd.factorize(pd.MultiIndex.from_frame(respondents.loc[ok, by]), sort=True)
    weights = w.to_numpy(dtype=float)[ok]
    out: list[HumanDistribution] = []
    for q in qs:
        codes = codebook[q].extra["codes"]
        pos = respondents[q].map({float(c): k for k, c in enumerate(codes)})
        if (i := _first_bad(pos.isna() & respondents[q].notna())) is not None:
            raise ValueLensError(f"distributions: respondent {i}, question {q}: "
                                 f"code {_fmt(respondents[q].iloc[i])} is not an option code")
        pos = pos.to_numpy(dtype=float)[ok]
        has = ~np.isnan(pos)
        k, g = len(codes), len(keys)
        table = np.bincount(cells[has] * k + pos[has].astype(int), weights=weights[has], minlength=g * k).reshape(g, k)
        counts = np.bincount(cells[has], minlength=g)
        for j in np.flatnonzero(counts):
            total = table[j].sum()
            if total <= 0:
                continue
            group = ";".join(_group_part(c, v) for c, v in zip(by[1:], keys[j][1:]))
            out.append(HumanDistribution(q, str(keys[j][0]), tuple((table[j] / total).tolist()), group, int(counts[j])))
    return out


def respondents_to_survey(csv_path: str | Path, codebook_path: str | Path, metadata_path: str | Path | None = None,
                          *, adjustments_path: str | Path | None = None, questions: Sequence[str] | None = None,
                          countries: Iterable[str | int] | None = None, weighted: bool = True,
                          demographics: bool = True) -> Survey:
    """Codebook + microdata → Survey with per-country (group "") and, if ``demographics``, sex × age cells."""
    codebook = load_codebook(codebook_path, metadata_path, adjustments_path)
    df = load_microdata(csv_path, codebook, questions, countries)
    dists = distributions(df, codebook, ("country",), weighted)
    if demographics:
        dists += distributions(df, codebook, ("country", "sex", "age_group"), weighted)
    qs = {q: codebook[q] for q in df.columns if q in codebook and q not in _RESERVED}
    notes = [f"{Path(csv_path).name}: {len(df)} respondents, {df['country'].nunique()} countries, {len(qs)} questions",
             "weighted by W_WEIGHT" if weighted and df.attrs.get("has_weight") else "unweighted (no W_WEIGHT column or weighted=False)"]
    missing = int((df["sex"].isna() | df["age_group"].isna()).sum())
    if demographics and missing:
        notes.append(f"{missing} respondents lack sex or age: counted per country, not in sex × age cells")
    return Survey(qs, dists, "wvs7", notes)
