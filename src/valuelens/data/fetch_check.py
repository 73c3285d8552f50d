"""``valuelens data check NAME FILE``: a user-downloaded file validated with valuelens's own loaders
(kept apart from :mod:`valuelens.data.fetch`, which the loaders import for ``fetched:`` paths)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from valuelens.data.fetch import dataset_dir, get, read_manifest, resolve, sha256_file
from valuelens.errors import ValueLensError


def check_file(name: str, file: str | Path, codebook: str | Path | None = None) -> list[str]:
    """Validate a local file (or folder) in dataset ``name``'s format with valuelens's loaders; lines to print.
    Bad input raises the loader's one-line error."""
    ds = get(name)
    path = Path(resolve(str(file)))  # fetched:NAME works here too
    if not path.exists():
        raise ValueLensError(f"{path}: file not found")
    kind = ds.check
    lines: list[str] = []
    if kind == "wvs7":
        from valuelens.data.wvs import load_codebook, load_microdata

        if codebook is None:
            cb_ds = get("wvs_codebook")
            if read_manifest(dataset_dir(cb_ds)) is None:
                raise ValueLensError(f"{name}: checking microdata needs the WVS-7 codebook: give --codebook FILE, or "
                                     f"run `valuelens data fetch wvs_codebook --accept-licence` first")
            codebook = "fetched:wvs_codebook"
        cb = load_codebook(codebook)  # resolves fetched: paths itself
        df = load_microdata(path, cb)
        qs = [c for c in df.columns if c in cb]
        lines.append(f"{path}: WVS-7 microdata layout ok: {len(df)} respondents, {df['country'].nunique()} countries, "
                     f"{len(qs)} codebook questions, weights {'W_WEIGHT' if df.attrs.get('has_weight') else 'absent'}, "
                     f"sex and age known for {int((df['sex'].notna() & df['age'].notna()).sum())} respondents")
        lines.append(f"use it in an audit: data: {{kind: wvs7, path: {path}, codebook: {codebook}}}")
    elif kind == "cao2025":
        from valuelens.data.cao2025 import load_cao2025

        lines += [f"{path}: Cao et al. 2025 layout ok"] + load_cao2025(path).notes
    elif kind == "global_opinions":
        from valuelens.data.global_opinions import load_global_opinions

        lines += [f"{path}: GlobalOpinionQA layout ok"] + load_global_opinions(path).notes
    elif kind == "moralchoice":
        from valuelens.data.dilemmas import load_moralchoice

        scenarios, _ = load_moralchoice(path)
        lines.append(f"{path}: MoralChoice layout ok: {len(scenarios)} scenarios, question and response templates")
    elif kind == "wvs_codebook":
        from valuelens.data.wvs import load_codebook

        lines.append(f"{path}: WVS-7 codebook ok: {len(load_codebook(path))} multiple-choice questions")
    else:
        raise ValueLensError(f"{name}: no format check for this dataset")
    if path.is_file():
        digest, _ = sha256_file(path)
        pinned = [f.path for f in ds.files if f.sha256 == digest]
        if pinned:
            lines.append(f"SHA-256 matches the pinned {name} file {pinned[0]}")
        elif any(PurePosixPath(f.path).name == path.name and f.sha256 for f in ds.files):
            lines.append(f"SHA-256 {digest[:16]}… differs from the pinned {name} file of that name (another version)")
    if ds.source == "register":
        lines.append(f"{ds.licence}. Register and download at {ds.register_url}")
    else:
        lines.append(f"licence: {ds.licence}")
    return lines
