"""Public datasets: the registry (``datasets.json``), a cache in the user data
dir, robust downloads, and ``fetched:NAME`` paths for audit files.

Cache: ``$VALUELENS_DATA_DIR`` when set, else ``platformdirs.user_data_dir("valuelens")/datasets``.
A fetched dataset lives in ``ROOT/NAME/REVISION/`` with ``valuelens-dataset.json``
(licence, revision, each file's SHA-256 and size). That directory appears
only once every file is downloaded and verified: files are downloaded into
``ROOT/.partial/NAME/REVISION/`` as ``FILE.part``, checked (size, SHA-256),
renamed, and the finished staging directory is renamed into place. A download
cut short stays in ``.partial`` only when the server supports resuming (HTTP
Range), and the next fetch resumes it; a checksum mismatch or a 404 deletes it.

Checksums: a registry file with a ``sha256`` must match it; one with
``sha256: null`` (unknown when the entry was written: no network) gets the
digest of its first download recorded in the cache (``checksum: recorded on
first fetch``), and later fetches and checks must match that (trust on first use).

Hugging Face datasets (``source: hf``) are downloaded with
``huggingface_hub.hf_hub_download`` at the pinned commit when huggingface_hub
is installed (it comes with the ``hf`` extra), else with the same HTTP code as
``url`` datasets from ``$HF_ENDPOINT/datasets/REPO/resolve/REVISION/FILE``
(the Hub's URL layout). ``HF_ENDPOINT`` is read at call time.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from valuelens import __version__
from valuelens.errors import ValueLensError
from valuelens.locking import exclusive

PREFIX = "fetched:"
MANIFEST = "valuelens-dataset.json"
PARTIAL = ".partial"
LOCK = ".lock"  # one fetch at a time per cache (flock; released when the process ends, however it ends)
CHUNK = 1 << 16
TIMEOUT = 30.0  # seconds without data before a download is given up (it can be resumed)
HF_DEFAULT = "https://huggingface.co"
SOURCES = ("url", "hf", "register", "unavailable")
FIRST_FETCH = "recorded on first fetch"
PINNED = "pinned in the registry"


@dataclass(frozen=True)
class DataFile:
    path: str           # where it lives in the dataset's cache directory
    url: str | None     # url datasets; hf datasets build it from repo/revision/path
    sha256: str | None  # None: recorded on first fetch, then enforced
    size: int | None


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    source: str
    licence: str
    licence_url: str | None
    accept_licence: bool
    homepage: str
    files: tuple[DataFile, ...]
    revision: str = ""
    repo: str = ""
    main: str = ""      # what ``fetched:NAME`` points at (a file, or a folder of files)
    check: str = ""     # loader ``data check`` uses
    audit: str = ""     # how an audit file uses it
    note: str = ""
    register_url: str = ""
    cite: str = ""

    @property
    def fetchable(self) -> bool:
        return self.source in ("url", "hf")


def _safe_rel(p: str, where: str) -> str:
    pp = PurePosixPath(p)
    if not p or pp.is_absolute() or ".." in pp.parts or "\\" in p:
        raise ValueLensError(f"{where}: file path {p!r} must be relative, without '..'")
    return str(pp)


def _parse(name: str, raw: dict[str, Any]) -> Dataset:
    where = f"datasets.json: {name}"
    source = raw.get("source")
    if source not in SOURCES:
        raise ValueLensError(f"{where}: source {source!r} is not one of {', '.join(SOURCES)}")
    files = []
    for i, f in enumerate(raw.get("files") or []):
        sha = f.get("sha256")
        if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise ValueLensError(f"{where}: files[{i}]: sha256 must be 64 lowercase hex digits or null")
        if source == "url" and not f.get("url"):
            raise ValueLensError(f"{where}: files[{i}]: a url dataset needs each file's url")
        files.append(DataFile(_safe_rel(f["path"], where), f.get("url"), sha, f.get("size")))
    if source in ("url", "hf") and (not files or not raw.get("revision")):
        raise ValueLensError(f"{where}: a fetchable dataset needs files and a pinned revision")
    if source == "hf" and not raw.get("repo"):
        raise ValueLensError(f"{where}: an hf dataset needs repo")
    return Dataset(name=name, title=raw.get("title", name), source=source, licence=raw["licence"],
                   licence_url=raw.get("licence_url"), accept_licence=bool(raw.get("accept_licence")),
                   homepage=raw.get("homepage", ""), files=tuple(files), revision=raw.get("revision", ""),
                   repo=raw.get("repo", ""), main=raw.get("main", ""), check=raw.get("check", ""),
                   audit=raw.get("audit", ""), note=raw.get("note", ""), register_url=raw.get("register_url", ""),
                   cite=raw.get("cite", ""))


def load_registry(text: str | None = None) -> dict[str, Dataset]:
    """The registry: ``datasets.json`` shipped with valuelens (or ``text``, for tests)."""
    if text is None:
        text = resources.files("valuelens.data").joinpath("datasets.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    return {name: _parse(name, d) for name, d in raw["datasets"].items()}


_REGISTRY: dict[str, Dataset] | None = None


def registry() -> dict[str, Dataset]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry()
    return _REGISTRY


def get(name: str, reg: dict[str, Dataset] | None = None) -> Dataset:
    reg = registry() if reg is None else reg
    if name not in reg:
        raise ValueLensError(f"unknown dataset {name!r}; known: {', '.join(sorted(reg))} (valuelens data list)")
    return reg[name]


def data_root() -> Path:
    """The dataset cache: ``$VALUELENS_DATA_DIR``, else the user data dir's ``valuelens/datasets``."""
    env = os.environ.get("VALUELENS_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("valuelens", appauthor=False)) / "datasets"


def dataset_dir(ds: Dataset, root: Path | None = None) -> Path:
    return (root or data_root()) / ds.name / ds.revision


def _stage_dir(ds: Dataset, root: Path) -> Path:
    return root / PARTIAL / ds.name / ds.revision


def read_manifest(dest: Path) -> dict[str, Any] | None:
    """The cached dataset's record, or None when it is not (completely) fetched."""
    try:
        m = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and isinstance(m.get("files"), dict) else None


def sha256_file(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


# --- downloads --------------------------------------------------------------------------------------------------

def _net_error(label: str, url: str, e: BaseException) -> ValueLensError:
    reason = getattr(e, "reason", e)
    if isinstance(reason, ConnectionRefusedError):
        why = "connection refused"
    elif isinstance(reason, socket.gaierror):
        why = "host not found (no network, or DNS failure)"
    elif isinstance(reason, (TimeoutError, socket.timeout)):
        why = f"no answer within {TIMEOUT:.0f} s"
    elif isinstance(reason, ssl.SSLError):
        why = f"TLS error ({reason.reason or reason})"
    else:
        why = str(reason) or type(reason).__name__
    return ValueLensError(f"{label}: cannot download {url}: {why}; check the network (proxy, HF_ENDPOINT) and rerun",
                          exit_code=1)


def _http_error(label: str, url: str, code: int, reason: str) -> ValueLensError:
    if code == 404:
        return ValueLensError(f"{label}: {url}: not found (HTTP 404); the pinned file may have moved upstream "
                              f"(please report it)", exit_code=1)
    if code in (401, 403):
        return ValueLensError(f"{label}: {url}: access denied (HTTP {code}); the dataset may need a login or "
                              f"accepting its terms on the provider's site", exit_code=1)
    return ValueLensError(f"{label}: {url}: HTTP {code} {reason}; rerun later", exit_code=1)


def _content_range_start(value: str | None) -> tuple[int, int | None] | None:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    try:
        unit, rng = (value or "").split(" ", 1)
        span, total = rng.split("/", 1)
        return int(span.split("-", 1)[0]), (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def http_download(url: str, part: Path, label: str, timeout: float = TIMEOUT) -> None:
    """Download ``url`` to ``part``, resuming from its current size with an HTTP Range request.

    A reply cut short raises a one-line error; ``part`` is kept for the next
    attempt only when the server supports ranges, else it is deleted."""
    part.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):  # a second pass only after the server refused or ignored the requested range
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": f"valuelens/{__version__}", "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and have:  # our partial file is not a prefix the server accepts: start again
                part.unlink()
                continue
            part.unlink(missing_ok=True)
            raise _http_error(label, url, e.code, str(e.reason)) from None
        except (urllib.error.URLError, OSError) as e:
            raise _net_error(label, url, e) from None
        with resp:
            resumable = resp.status == 206 or resp.headers.get("Accept-Ranges", "").lower() == "bytes"
            length = resp.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if resp.status == 206:
                cr = _content_range_start(resp.headers.get("Content-Range"))
                if cr is None or cr[0] != have:
                    part.unlink()
                    continue
                total, mode = cr[1], "ab"
            else:  # 200: the whole file (the server ignored our range, or there was none)
                have, mode = 0, "wb"
                total = length
            got, why = 0, ""
            try:
                with part.open(mode) as out:
                    while chunk := resp.read(CHUNK):
                        out.write(chunk)
                        got += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            except (http.client.IncompleteRead, ConnectionError, TimeoutError, socket.timeout) as e:
                why = "connection closed" if not isinstance(e, (TimeoutError, socket.timeout)) else "timed out"
            if why or (length is not None and got < length):
                now = part.stat().st_size if part.exists() else 0
                of = f" of {total}" if total is not None else ""
                if resumable:
                    hint = f"rerun the same command to resume (kept in {part.parent})"
                else:
                    part.unlink(missing_ok=True)
                    hint = "the server cannot resume, the partial file was deleted; rerun to start again"
                raise ValueLensError(f"{label}: download truncated at {now}{of} bytes "
                                     f"({why or 'connection closed early'}); {hint}", exit_code=1)
            return
    raise ValueLensError(f"{label}: the server's replies to a resumed download are inconsistent; rerun with --force",
                         exit_code=1)


def hf_url(ds: Dataset, f: DataFile) -> str:
    endpoint = (os.environ.get("HF_ENDPOINT") or HF_DEFAULT).rstrip("/")
    return f"{endpoint}/datasets/{ds.repo}/resolve/{ds.revision}/{f.path}"


def _hf_download(ds: Dataset, f: DataFile, part: Path, label: str, use_hub: bool | None = None) -> None:
    """An hf dataset file to ``part``: huggingface_hub when installed (its own resume), else plain HTTP."""
    if use_hub is None:
        try:
            import huggingface_hub  # noqa: F401
            use_hub = True
        except ImportError:
            use_hub = False
    if not use_hub:
        http_download(hf_url(ds, f), part, label)
        return
    from huggingface_hub import errors as hfe
    from huggingface_hub import hf_hub_download

    local = part.parent / f".hf-{part.name}"  # huggingface_hub keeps its .incomplete file here between attempts
    url = hf_url(ds, f)
    try:
        got = hf_hub_download(ds.repo, f.path, repo_type="dataset", revision=ds.revision, local_dir=local,
                              endpoint=os.environ.get("HF_ENDPOINT") or None)
    except hfe.LocalEntryNotFoundError as e:  # (a subclass of EntryNotFoundError) the Hub's HEAD call failed
        cause = e.__cause__ or e.__context__
        code = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(cause, hfe.HfHubHTTPError) and code:  # the Hub answered, with an error
            raise _http_error(label, url, code, str(cause).splitlines()[0][:80]) from None
        raise ValueLensError(f"{label}: cannot reach the Hugging Face Hub for {url} (no network, or a wrong "
                             f"HF_ENDPOINT); rerun later", exit_code=1) from None
    except (hfe.RepositoryNotFoundError, hfe.RevisionNotFoundError, hfe.EntryNotFoundError) as e:
        what = {hfe.RepositoryNotFoundError: "repository", hfe.RevisionNotFoundError: "revision"}.get(type(e), "file")
        raise ValueLensError(f"{label}: {url}: not found (HTTP 404, {what}); the pinned file may have moved upstream "
                             f"(please report it)", exit_code=1) from None
    except hfe.HfHubHTTPError as e:
        code = getattr(getattr(e, "response", None), "status_code", None)
        raise _http_error(label, url, code or 0, str(e).splitlines()[0][:80]) from None
    except OSError as e:  # e.g. huggingface_hub's size consistency check on a truncated download
        raise ValueLensError(f"{label}: download from {url} failed ({str(e).splitlines()[0][:120]}); "
                             f"rerun the same command to resume", exit_code=1) from None
    os.replace(got, part)
    shutil.rmtree(local, ignore_errors=True)


# --- fetch ------------------------------------------------------------------------------------------------------

@dataclass
class FetchResult:
    dataset: Dataset
    path: Path           # the dataset's directory in the cache
    status: str          # "fetched" or "cached"
    manifest: dict[str, Any]

    @property
    def main(self) -> Path:
        return self.path / self.dataset.main if self.dataset.main else self.path


def licence_line(ds: Dataset) -> str:
    url = f" ({ds.licence_url})" if ds.licence_url else ""
    return f"{ds.name}: {ds.title}. Licence: {ds.licence}{url}"


def _not_fetchable(ds: Dataset) -> ValueLensError:
    if ds.source == "register":
        return ValueLensError(f"{ds.name}: valuelens cannot download it ({ds.licence}); register and download it at "
                              f"{ds.register_url}, then check your file with `valuelens data check {ds.name} FILE`")
    return ValueLensError(f"{ds.name}: not fetchable: {ds.note or ds.licence}")


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _verify_cached(ds: Dataset, dest: Path, manifest: dict[str, Any]) -> None:
    for f in ds.files:
        rec = manifest["files"].get(f.path) or {}
        p = dest / f.path
        if not p.is_file():
            raise ValueLensError(f"{ds.name}: cached copy {dest} lacks {f.path}; rerun with --force to download again")
        digest, _ = sha256_file(p)
        want = f.sha256 or rec.get("sha256")
        if want and digest != want:
            raise ValueLensError(f"{ds.name}: cached {p} changed since it was fetched (SHA-256 {digest[:16]}…, "
                                 f"expected {want[:16]}…); rerun with --force to download again")


def fetch(name: str, accept_licence: bool = False, force: bool = False, root: Path | None = None,
          say: Callable[[str], None] | None = None, reg: dict[str, Dataset] | None = None,
          use_hub: bool | None = None) -> FetchResult:
    """Download (or find in the cache) dataset ``name``, verified; see the module docstring.

    ``use_hub``: for hf datasets, force huggingface_hub (True) or plain HTTP (False); None: hub if installed."""
    ds = get(name, reg)
    say = say or (lambda _msg: None)
    if not ds.fetchable:
        raise _not_fetchable(ds)
    if ds.accept_licence and not accept_licence:
        url = f" ({ds.licence_url})" if ds.licence_url else ""
        raise ValueLensError(f"{name}: licence not accepted: {ds.licence}{url}; read it, then rerun with "
                             f"--accept-licence")
    root = Path(root) if root is not None else data_root()
    with _cache_lock(root):
        return _fetch(ds, accept_licence, force, root, say, use_hub)


def _cache_lock(root: Path):
    return exclusive(root, LOCK, unusable="cannot use as the dataset cache (set VALUELENS_DATA_DIR to another folder)",
                     busy="another valuelens data fetch is using this cache; wait for it to finish")


def _fetch(ds: Dataset, accept_licence: bool, force: bool, root: Path, say: Callable[[str], None],
           use_hub: bool | None) -> FetchResult:
    name = ds.name
    dest = dataset_dir(ds, root)
    previous = read_manifest(dest)
    if previous is not None and not force:
        _verify_cached(ds, dest, previous)
        return FetchResult(ds, dest, "cached", previous)
    stage = _stage_dir(ds, root)
    if force:
        shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True, exist_ok=True)
    records: dict[str, Any] = {}
    for f in ds.files:
        label = f"{name}: {f.path}"
        target = stage / f.path
        if not target.is_file():  # a file verified by an earlier, interrupted fetch is not downloaded again
            part = target.with_name(target.name + ".part")
            say(f"downloading {f.path}" + (f" ({f.size / 1e6:.1f} MB)" if f.size and f.size >= 100_000 else
                                           f" ({f.size} bytes)" if f.size else ""))
            if ds.source == "hf":
                _hf_download(ds, f, part, label, use_hub)
            else:
                assert f.url is not None
                http_download(f.url, part, label)
            digest, size = _check_file(ds, f, part, previous, label)
            os.replace(part, target)
        else:
            digest, size = _check_file(ds, f, target, previous, label)
        known = f.sha256 is not None
        records[f.path] = {"sha256": digest, "size": size, "checksum": PINNED if known else FIRST_FETCH,
                           "url": f.url or hf_url(ds, f)}
        if not known and previous is not None:  # trust on first use: the earlier record stands
            old = previous["files"].get(f.path) or {}
            records[f.path]["checksum"] = old.get("checksum", FIRST_FETCH)
    manifest = {"name": ds.name, "title": ds.title, "source": ds.source, "repo": ds.repo, "revision": ds.revision,
                "homepage": ds.homepage, "licence": ds.licence, "licence_url": ds.licence_url,
                "licence_accepted": bool(accept_licence) if ds.accept_licence else None, "cite": ds.cite,
                "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "valuelens": __version__, "files": records}
    _atomic_json(stage / MANIFEST, manifest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists():
        old = dest.with_name(f"{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(stage, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _prune_empty(stage.parent, root)
    return FetchResult(ds, dest, "fetched", manifest)


def _check_file(ds: Dataset, f: DataFile, path: Path, previous: dict[str, Any] | None, label: str) -> tuple[str, int]:
    """Size and SHA-256 of a downloaded file against the registry (or the first fetch's record); a mismatch
    deletes the file."""
    digest, size = sha256_file(path)
    if f.size is not None and size != f.size:
        path.unlink()
        raise ValueLensError(f"{label}: downloaded {size} bytes, expected {f.size} (truncated or a different file); "
                             f"the download was deleted, rerun to try again", exit_code=1)
    want, origin = f.sha256, PINNED
    if want is None and previous is not None:
        want, origin = (previous["files"].get(f.path) or {}).get("sha256"), FIRST_FETCH
    if want and digest != want:
        path.unlink()
        raise ValueLensError(f"{label}: checksum mismatch (SHA-256 {digest}, expected {want}, {origin}); the download "
                             f"was deleted; rerun to try again, and if it persists the upstream file changed "
                             f"(please report it)", exit_code=1)
    return digest, size


def _prune_empty(p: Path, root: Path) -> None:
    """Remove empty staging directories up to (not including) ``root``."""
    while p != root and root in p.parents:
        try:
            p.rmdir()
        except OSError:
            return
        p = p.parent


# --- cache listing, audit paths, run records --------------------------------------------------------------------

def _partial_bytes(ds: Dataset, root: Path) -> int:
    stage = _stage_dir(ds, root)
    if not stage.is_dir():
        return 0
    return sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())


def list_datasets(root: Path | None = None, reg: dict[str, Dataset] | None = None) -> list[dict[str, Any]]:
    """One row per known dataset: name, title, source, licence, accept (licence must be accepted), status, path."""
    root = Path(root) if root is not None else data_root()
    rows = []
    for ds in (registry() if reg is None else reg).values():
        path = ""
        if not ds.fetchable:
            status = "register and download yourself" if ds.source == "register" else "not fetchable"
            path = ds.register_url or ds.homepage
        else:
            dest = dataset_dir(ds, root)
            m = read_manifest(dest)
            if m is not None:
                status, path = "cached", str(dest)
            elif (n := _partial_bytes(ds, root)) > 0:
                status, path = f"partial download ({n} bytes; fetch resumes it)", str(_stage_dir(ds, root))
            else:
                status = "not cached"
        rows.append({"name": ds.name, "title": ds.title, "source": ds.source, "licence": ds.licence,
                     "accept": ds.accept_licence, "status": status, "path": path, "audit": ds.audit})
    return rows


def _member(ds: Dataset, dest: Path, member: str, value: str) -> Path:
    member = member.strip("/")
    paths = [f.path for f in ds.files]
    if member in paths:
        return dest / member
    by_name = [p for p in paths if PurePosixPath(p).name == member]
    if len(by_name) == 1:
        return dest / by_name[0]
    if any(p.startswith(member + "/") for p in paths):
        return dest / member
    raise ValueLensError(f"{value}: dataset {ds.name!r} has no file {member!r}; its files: {', '.join(paths)}")


def resolve(value: Any, root: Path | None = None) -> Any:
    """``fetched:NAME`` (the dataset's main file or folder) or ``fetched:NAME/FILE`` (a registry path or a unique
    file name) as the cached path (a str); any other value unchanged. Not fetched: a one-line error saying how."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return value
    name, _, member = value[len(PREFIX):].strip().partition("/")
    ds = get(name)
    if not ds.fetchable:
        raise ValueLensError(f"{value}: {_not_fetchable(ds)}")
    dest = dataset_dir(ds, root)
    if read_manifest(dest) is None:
        flag = " --accept-licence" if ds.accept_licence else ""
        raise ValueLensError(f"{value}: dataset {name!r} is not fetched; run `valuelens data fetch {name}{flag}` "
                             f"(cache: {dest.parent.parent})")
    path = _member(ds, dest, member, value) if member else (dest / ds.main if ds.main else dest)
    return str(path)


def _fetched_names(obj: Any) -> list[str]:
    out: list[str] = []
    if isinstance(obj, str):
        if obj.startswith(PREFIX):
            out.append(obj[len(PREFIX):].strip().partition("/")[0])
    elif isinstance(obj, dict):
        for v in obj.values():
            out += _fetched_names(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out += _fetched_names(v)
    return out


def run_records(audit: Any, root: Path | None = None) -> list[dict[str, Any]]:
    """For run.json: each dataset an audit (as a JSON-like dict) reads through ``fetched:`` paths, with its
    licence, revision, cache path and file checksums."""
    out = []
    for name in dict.fromkeys(_fetched_names(audit)):
        try:
            ds = get(name)
        except ValueLensError:
            out.append({"name": name, "status": "unknown dataset"})
            continue
        dest = dataset_dir(ds, root)
        m = read_manifest(dest)
        rec = {"name": name, "licence": ds.licence, "licence_url": ds.licence_url, "revision": ds.revision,
               "repo": ds.repo, "cite": ds.cite, "path": str(dest)}
        if m is None:
            rec["status"] = "not fetched"
        else:
            rec.update(status="fetched", fetched=m.get("fetched"), licence_accepted=m.get("licence_accepted"),
                       files={p: {"sha256": r.get("sha256"), "checksum": r.get("checksum")}
                              for p, r in m["files"].items()})
        out.append(rec)
    return out
