"""`valuelens data fetch/list/check` against a local HTTP server on 127.0.0.1 (no network exists here).

The server (stdlib http.server in a thread) serves files the tests make, honours HTTP Range requests
(206 + Content-Range) unless told not to, can cut a reply short (a truncated or interrupted download),
and answers the Hugging Face Hub's layout ``/datasets/{repo}/resolve/{revision}/{file}`` (HEAD with
X-Repo-Commit and ETag, GET), so the huggingface_hub path is tested by pointing HF_ENDPOINT at it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from valuelens.data import fetch as F
from valuelens.data.fetch_check import check_file
from valuelens.errors import ValueLensError

REV = "0123456789abcdef0123456789abcdef01234567"


class Server:
    """Files by URL path; ``truncate``: paths whose next N replies stop halfway; ``ranges``: honour Range."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.ranges = True
        self.log: list[tuple[str, str, str | None]] = []
        self.served = 0  # body bytes sent
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _head(self, send_body: bool) -> None:
                path = self.path.split("?")[0]
                rng = self.headers.get("Range")
                srv.log.append((self.command, path, rng))
                body = srv.files.get(path)
                if body is None:
                    self.send_response(404)
                    if path.startswith("/datasets/"):  # as the Hub does
                        self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if rng and srv.ranges and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                if srv.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
                self.send_header("X-Repo-Commit", REV)  # what the Hub sends; huggingface_hub requires it
                self.end_headers()
                if not send_body:
                    return
                chunk = body[start:]
                if srv.truncate.get(path, 0) > 0:
                    srv.truncate[path] -= 1
                    chunk = chunk[: len(chunk) // 2]
                    self.close_connection = True
                self.wfile.write(chunk)
                srv.served += len(chunk)

            def do_GET(self):
                self._head(True)

            def do_HEAD(self):
                self._head(False)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    r = tmp_path / "cache"
    monkeypatch.setenv("VALUELENS_DATA_DIR", str(r))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return r


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def registry(server: Server, files: dict[str, bytes], *, name="toy", accept=False, pinned=True,
             source="url", extra: dict | None = None) -> dict[str, F.Dataset]:
    """A registry with one dataset whose files the server holds (``files``: dataset path -> content)."""
    entries = []
    for path, body in files.items():
        if source == "url":
            server.files[f"/{REV}/{path}"] = body
        else:
            server.files[f"/datasets/org/toy-data/resolve/{REV}/{path}"] = body
        entries.append({"path": path, "url": f"{server.url}/{REV}/{path}" if source == "url" else None,
                        "sha256": sha(body) if pinned else None, "size": len(body) if pinned else None})
    raw = {"datasets": {name: {"title": "Toy data", "source": source, "repo": "org/toy-data", "revision": REV,
                               "licence": "CC-BY-NC-SA-4.0" if accept else "CC-BY-4.0",
                               "licence_url": "https://example.org/licence", "accept_licence": accept,
                               "files": entries, "main": next(iter(files)), **(extra or {})},
                        "micro": {"title": "Microdata", "source": "register", "licence": "no redistribution",
                                  "register_url": "https://example.org/register", "files": [], "check": "wvs7"}}}
    return F.load_registry(json.dumps(raw))


def leftovers(root: Path) -> list[str]:
    """Every file under the cache (relative), to show nothing half-written stays."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != F.LOCK)


A, B = b"alpha,beta\n" + b"1,2\n" * 5000, b'{"k": [1, 2, 3]}\n'


def test_success_then_cached(server, root):
    reg = registry(server, {"data/a.csv": A, "b.json": B})
    res = F.fetch("toy", reg=reg)
    assert res.status == "fetched" and res.path == root / "toy" / REV
    assert (res.path / "data/a.csv").read_bytes() == A and (res.path / "b.json").read_bytes() == B
    m = json.loads((res.path / F.MANIFEST).read_text())
    assert m["licence"] == "CC-BY-4.0" and m["revision"] == REV
    assert m["files"]["data/a.csv"] == {"sha256": sha(A), "size": len(A), "checksum": F.PINNED,
                                        "url": f"{server.url}/{REV}/data/a.csv"}
    assert not (root / F.PARTIAL).exists()  # staging removed once the dataset is in place
    n = len(server.log)
    again = F.fetch("toy", reg=reg)
    assert again.status == "cached" and len(server.log) == n  # verified from disk, nothing downloaded
    assert again.main == res.path / "data/a.csv"


def test_checksum_mismatch_leaves_nothing(server, root):
    reg = registry(server, {"a.csv": A})
    server.files[f"/{REV}/a.csv"] = A.replace(b"1,2", b"1,3")  # same size, other bytes
    with pytest.raises(ValueLensError, match=r"a.csv: checksum mismatch \(SHA-256 [0-9a-f]{64}, expected") as e:
        F.fetch("toy", reg=reg)
    assert e.value.exit_code == 1
    assert leftovers(root) == []


def test_size_mismatch_is_an_error(server, root):
    reg = registry(server, {"a.csv": A})
    server.files[f"/{REV}/a.csv"] = A + b"9,9\n"
    with pytest.raises(ValueLensError, match=f"downloaded {len(A) + 4} bytes, expected {len(A)}"):
        F.fetch("toy", reg=reg)
    assert leftovers(root) == []


def test_404(server, root):
    reg = registry(server, {"a.csv": A, "b.json": B})
    del server.files[f"/{REV}/b.json"]
    with pytest.raises(ValueLensError, match=r"toy: b.json: .*/b.json: not found \(HTTP 404\)") as e:
        F.fetch("toy", reg=reg)
    assert e.value.exit_code == 1
    assert not (root / "toy").exists()  # a.csv was fine, but the dataset is not half there
    assert [p for p in leftovers(root) if p.endswith(".part")] == []


def test_truncated_download_without_range_support(server, root):
    reg = registry(server, {"a.csv": A})
    server.ranges = False
    server.truncate[f"/{REV}/a.csv"] = 1
    with pytest.raises(ValueLensError, match=rf"download truncated at {len(A) // 2} of {len(A)} bytes.*cannot resume"):
        F.fetch("toy", reg=reg)
    assert leftovers(root) == []


def test_interrupted_download_is_resumed(server, root):
    reg = registry(server, {"a.csv": A, "b.json": B})
    server.truncate[f"/{REV}/a.csv"] = 1
    with pytest.raises(ValueLensError, match=r"truncated at \d+ of \d+ bytes.*rerun the same command to resume"):
        F.fetch("toy", reg=reg)
    assert not (root / "toy").exists()  # not in the cache: only a .part in the staging area
    assert leftovers(root) == [f".partial/toy/{REV}/a.csv.part"]
    half = len(A) // 2
    row = {r["name"]: r for r in F.list_datasets(root, reg)}["toy"]
    assert row["status"].startswith(f"partial download ({half} bytes")
    served = server.served
    res = F.fetch("toy", reg=reg)
    assert (res.path / "a.csv").read_bytes() == A
    gets = [r for r in server.log if r[0] == "GET" and r[1].endswith("a.csv")]
    assert gets[-1][2] == f"bytes={half}-"  # resumed, not restarted
    assert server.served - served == (len(A) - half) + len(B)
    assert leftovers(root) == sorted([f"toy/{REV}/a.csv", f"toy/{REV}/b.json", f"toy/{REV}/{F.MANIFEST}"])


def test_resume_when_server_ignores_range_restarts_cleanly(server, root):
    reg = registry(server, {"a.csv": A})
    server.truncate[f"/{REV}/a.csv"] = 1
    with pytest.raises(ValueLensError):
        F.fetch("toy", reg=reg)
    server.ranges = False  # now answers 200 with the whole file: the partial file must be overwritten, not appended
    res = F.fetch("toy", reg=reg)
    assert (res.path / "a.csv").read_bytes() == A


def test_licence_not_accepted(server, root):
    reg = registry(server, {"a.csv": A}, accept=True)
    with pytest.raises(ValueLensError, match=r"toy: licence not accepted: CC-BY-NC-SA-4.0 \(https://example.org/"
                                             r"licence\); read it, then rerun with --accept-licence") as e:
        F.fetch("toy", reg=reg)
    assert e.value.exit_code == 2 and server.log == [] and leftovers(root) == []
    res = F.fetch("toy", accept_licence=True, reg=reg)
    assert json.loads((res.path / F.MANIFEST).read_text())["licence_accepted"] is True


def test_connection_refused(root):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    raw = {"datasets": {"toy": {"source": "url", "revision": REV, "licence": "x", "files": [
        {"path": "a.csv", "url": f"http://127.0.0.1:{port}/a.csv", "sha256": None}]}}}
    with pytest.raises(ValueLensError, match=r"cannot download http://127.0.0.1:\d+/a.csv: connection refused") as e:
        F.fetch("toy", reg=F.load_registry(json.dumps(raw)))
    assert e.value.exit_code == 1 and leftovers(root) == []


def test_unpinned_checksum_recorded_on_first_fetch_then_enforced(server, root):
    reg = registry(server, {"a.csv": A}, pinned=False)
    res = F.fetch("toy", reg=reg)
    rec = json.loads((res.path / F.MANIFEST).read_text())["files"]["a.csv"]
    assert rec["sha256"] == sha(A) and rec["checksum"] == F.FIRST_FETCH
    server.files[f"/{REV}/a.csv"] = b"changed upstream\n"
    with pytest.raises(ValueLensError, match="checksum mismatch .*recorded on first fetch"):
        F.fetch("toy", force=True, reg=reg)
    assert (res.path / "a.csv").read_bytes() == A  # the verified copy is untouched
    (res.path / "a.csv").write_bytes(b"tampered\n")
    with pytest.raises(ValueLensError, match="changed since it was fetched"):
        F.fetch("toy", reg=reg)


def test_force_downloads_again(server, root):
    reg = registry(server, {"a.csv": A})
    F.fetch("toy", reg=reg)
    n = len(server.log)
    assert F.fetch("toy", force=True, reg=reg).status == "fetched" and len(server.log) == n + 1
    assert leftovers(root) == sorted([f"toy/{REV}/a.csv", f"toy/{REV}/{F.MANIFEST}"])


def test_cache_listing(server, root):
    reg = registry(server, {"a.csv": A})
    rows = {r["name"]: r for r in F.list_datasets(root, reg)}
    assert rows["toy"]["status"] == "not cached" and rows["toy"]["path"] == ""
    assert rows["micro"]["status"] == "register and download yourself"
    assert rows["micro"]["path"] == "https://example.org/register"
    F.fetch("toy", reg=reg)
    rows = {r["name"]: r for r in F.list_datasets(root, reg)}
    assert rows["toy"]["status"] == "cached" and rows["toy"]["path"] == str(root / "toy" / REV)
    assert rows["toy"]["licence"] == "CC-BY-4.0"


def test_register_dataset_is_not_fetchable(server, root):
    reg = registry(server, {"a.csv": A})
    with pytest.raises(ValueLensError, match="micro: valuelens cannot download it .*https://example.org/register.*"
                                             "valuelens data check micro FILE"):
        F.fetch("micro", reg=reg)


# --- Hugging Face datasets ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("use_hub", [True, False], ids=["huggingface_hub", "plain-http"])
def test_hf_dataset(server, root, monkeypatch, use_hub):
    if use_hub:
        pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    reg = registry(server, {"data/opinions.csv": A}, source="hf")
    res = F.fetch("toy", reg=reg, use_hub=use_hub)
    assert (res.path / "data/opinions.csv").read_bytes() == A
    assert any(r[1] == f"/datasets/org/toy-data/resolve/{REV}/data/opinions.csv" for r in server.log)
    m = json.loads((res.path / F.MANIFEST).read_text())
    assert m["files"]["data/opinions.csv"]["url"] == f"{server.url}/datasets/org/toy-data/resolve/{REV}/data/opinions.csv"
    assert leftovers(root) == sorted([f"toy/{REV}/data/opinions.csv", f"toy/{REV}/{F.MANIFEST}"])


@pytest.mark.parametrize("use_hub", [True, False], ids=["huggingface_hub", "plain-http"])
def test_hf_404_and_checksum_mismatch(server, root, monkeypatch, use_hub):
    if use_hub:
        pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    reg = registry(server, {"data/opinions.csv": A}, source="hf")
    key = f"/datasets/org/toy-data/resolve/{REV}/data/opinions.csv"
    body = server.files.pop(key)
    with pytest.raises(ValueLensError, match=r"not found \(HTTP 404"):
        F.fetch("toy", reg=reg, use_hub=use_hub)
    assert not (root / "toy").exists()
    server.files[key] = body[:-1] + b"!"
    with pytest.raises(ValueLensError, match="checksum mismatch"):
        F.fetch("toy", reg=reg, use_hub=use_hub)
    assert not (root / "toy").exists()
    assert [p for p in leftovers(root) if not p.startswith(".partial/toy/")] == []
    assert [p for p in leftovers(root) if p.endswith((".csv", ".part"))] == []


def test_hf_cut_short_reply_is_completed_and_verified(server, root, monkeypatch):
    """huggingface_hub retries a reply cut short within the same call (its own resume logic); what enters the
    cache is still the verified file, and nothing else stays."""
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    reg = registry(server, {"data/opinions.csv": A}, source="hf")
    server.truncate[f"/datasets/org/toy-data/resolve/{REV}/data/opinions.csv"] = 1
    res = F.fetch("toy", reg=reg, use_hub=True)
    assert (res.path / "data/opinions.csv").read_bytes() == A
    assert len([r for r in server.log if r[0] == "GET"]) == 2
    assert leftovers(root) == sorted([f"toy/{REV}/data/opinions.csv", f"toy/{REV}/{F.MANIFEST}"])


# --- audit files: fetched:NAME ----------------------------------------------------------------------------------

def cao_items() -> bytes:
    items = []
    for country, dist in (("United States", {"A": 60, "B": 40}), ("China", {"A": 25, "B": 75})):
        for qid in ("164", "165"):
            items.append({"id": qid, "instruction": f"How would someone from {country} answer the following question:",
                          "input": f"Question {qid} text? Here are the options:", "options": ["(A)Yes", "(B)No"],
                          "options_dist": dist, "data_type": "wvs"})
    return json.dumps(items).encode()


def test_fetched_path_in_loaders_and_run_record(server, root, monkeypatch):
    from valuelens.data.sources import load_survey

    reg = registry(server, {"dataset/cao.json": cao_items()}, accept=True)
    monkeypatch.setattr(F, "_REGISTRY", reg)
    with pytest.raises(ValueLensError, match=r"fetched:toy: dataset 'toy' is not fetched; run `valuelens data fetch "
                                             r"toy --accept-licence`"):
        load_survey("cao2025", "fetched:toy")
    F.fetch("toy", accept_licence=True)
    survey = load_survey("cao2025", "fetched:toy")  # the main file
    assert {d.country for d in survey.distributions} == {"United States", "China"}
    china = [d for d in survey.distributions if d.country == "China" and d.question_id == "164"][0]
    assert china.probs == pytest.approx((0.25, 0.75))
    assert F.resolve("fetched:toy/cao.json") == str(root / "toy" / REV / "dataset/cao.json")  # by file name
    with pytest.raises(ValueLensError, match="has no file 'nope.json'; its files: dataset/cao.json"):
        F.resolve("fetched:toy/nope.json")
    with pytest.raises(ValueLensError, match="unknown dataset 'nosuch'"):
        F.resolve("fetched:nosuch")
    assert F.resolve("plain/path.json") == "plain/path.json"
    recs = F.run_records({"layers": {"first_token": {"data": {"path": "fetched:toy", "path_zh": "fetched:toy/cao.json"}}}})
    assert len(recs) == 1 and recs[0]["name"] == "toy" and recs[0]["licence"] == "CC-BY-NC-SA-4.0"
    assert recs[0]["licence_accepted"] is True and recs[0]["files"]["dataset/cao.json"]["sha256"] == sha(cao_items())


def test_audit_run_records_the_licence(server, root, monkeypatch, tmp_path):
    """An audit whose data path is fetched:NAME runs on the cached file and run.json names the dataset's licence."""
    from valuelens import api

    reg = registry(server, {"dataset/cao.json": cao_items()}, accept=True)
    monkeypatch.setattr(F, "_REGISTRY", reg)
    F.fetch("toy", accept_licence=True)
    (tmp_path / "script.json").write_text(json.dumps({"rules": [], "default_text": "A"}))
    audit = tmp_path / "audit.yaml"
    audit.write_text(f"""\
name: fetched
output_dir: {tmp_path / 'out'}
languages: [en]
models:
  - name: fake
    backend: scripted:{tmp_path / 'script.json'}
layers:
  first_token:
    data: {{kind: cao2025, path: "fetched:toy"}}
""")
    api.run_full(audit, None)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [d["name"] for d in run["datasets"]] == ["toy"]
    assert run["datasets"][0]["licence"] == "CC-BY-NC-SA-4.0" and run["datasets"][0]["revision"] == REV
    assert run["datasets"][0]["files"]["dataset/cao.json"]["sha256"] == sha(cao_items())


# --- data check ----------------------------------------------------------------------------------------------------

CODEBOOK = {"Q1": {"question": "Important in life: family", "type": "multiple_choice",
                   "choices": {"1": "Very important", "2": "Rather important", "-1": "Don't know"}},
            "Q260": {"question": "Sex", "type": "multiple_choice", "choices": {"1": "Male", "2": "Female"}}}


def test_data_check_wvs_microdata(tmp_path):
    cb = tmp_path / "codebook.json"
    cb.write_text(json.dumps(CODEBOOK))
    good = tmp_path / "wvs.csv"
    good.write_text("B_COUNTRY,Q260,Q262,W_WEIGHT,Q1\n840,1,35,1.0,1\n840,2,70,0.5,2\n156,1,22,1.2,-1\n")
    lines = check_file("wvs7", good, cb)
    assert lines[0] == f"{good}: WVS-7 microdata layout ok: 3 respondents, 2 countries, 1 codebook questions, " \
                       "weights W_WEIGHT, sex and age known for 3 respondents"
    assert "worldvaluessurvey.org" in lines[-1] and "redistribution is not allowed" in lines[-1]
    bad = tmp_path / "bad.csv"
    bad.write_text("B_COUNTRY,Q260,Q262,Q1\n840,1,35,7\n")
    with pytest.raises(ValueLensError, match=r"bad.csv: row 1 \(line 2\), column Q1: code 7 is not in the codebook"):
        check_file("wvs7", bad, cb)


def test_data_check_wvs_needs_a_codebook(tmp_path, root):
    f = tmp_path / "wvs.csv"
    f.write_text("B_COUNTRY,Q1\n840,1\n")
    with pytest.raises(ValueLensError, match="needs the WVS-7 codebook: give --codebook FILE, or run `valuelens data "
                                             "fetch wvs_codebook --accept-licence` first"):
        check_file("wvs7", f)
    with pytest.raises(ValueLensError, match="nope.csv: file not found"):
        check_file("wvs7", tmp_path / "nope.csv")


def test_data_check_cao_file_compares_checksums(tmp_path, shared_data):
    f = shared_data / "wvs_cao2025" / "sft_wvs_valid.json"
    lines = check_file("cao2025", f)
    assert lines[0].endswith("Cao et al. 2025 layout ok")
    assert "SHA-256 matches the pinned cao2025 file dataset/sft_wvs_valid.json" in lines


def test_registry_checksums_match_the_reference_copies(shared_data):
    """Every pinned SHA-256 and size in datasets.json equals hashlib's over the byte copies in ../shared/data."""
    where = {"cao2025": "wvs_cao2025", "moralchoice": "moralchoice", "wvs_codebook": "wvs_codebook"}
    checked = 0
    for name, ds in F.registry().items():
        for f in ds.files:
            if f.sha256 is None:
                continue
            rel = f.path.removeprefix("data/") if name == "moralchoice" else Path(f.path).name
            body = (shared_data / where[name] / rel).read_bytes()
            assert (hashlib.sha256(body).hexdigest(), len(body)) == (f.sha256, f.size), f"{name}: {f.path}"
            checked += 1
    assert checked == 15


def test_shipped_registry_is_well_formed():
    reg = F.registry()
    assert {"global_opinions", "cao2025", "moralchoice", "wvs7"} <= set(reg)
    for ds in reg.values():
        assert ds.licence
        if ds.fetchable:
            assert len(ds.revision) == 40 and all(c in "0123456789abcdef" for c in ds.revision), ds.name
            assert ds.main and (any(f.path == ds.main or f.path.startswith(ds.main + "/") for f in ds.files))
            for f in ds.files:
                assert f.sha256 is not None or f.size is None  # never a size without its checksum
                assert ds.source == "hf" or re.search(r"/[0-9a-f]{40}/", f.url or ""), f.url  # pinned to a commit
    go = reg["global_opinions"]
    assert go.source == "hf" and go.repo == "Anthropic/llm_global_opinions" and go.accept_licence
    assert reg["moralchoice"].accept_licence is False and reg["wvs7"].source == "register"


# --- the CLI -------------------------------------------------------------------------------------------------------

def vl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "valuelens", "data", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200", **env})


def test_cli_errors_are_one_line(tmp_path):
    env = {"VALUELENS_DATA_DIR": str(tmp_path / "c")}
    r = vl("fetch", "global_opinions", env=env)  # needs --accept-licence: refused before any network use
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stdout.startswith("global_opinions: GlobalOpinionQA") and "Licence: CC-BY-NC-SA-4.0" in r.stdout
    assert r.stderr.strip().count("\n") == 0 and "licence not accepted" in r.stderr and "--accept-licence" in r.stderr
    r = vl("fetch", "wvs7", env=env)
    assert r.returncode == 2 and "register and download it at https://www.worldvaluessurvey.org" in r.stderr
    r = vl("fetch", "nope", env=env)
    assert r.returncode == 2 and "unknown dataset 'nope'; known: cao2025" in r.stderr
    r = vl("list", env=env)
    assert r.returncode == 0 and f"cache: {tmp_path / 'c'}" in r.stdout
    assert "global_opinions: not cached [hf]" in r.stdout and "wvs7: register and download yourself" in r.stdout
    assert not (tmp_path / "c").exists()  # listing creates nothing
    cb = tmp_path / "codebook.json"
    cb.write_text(json.dumps(CODEBOOK))
    bad = tmp_path / "bad.csv"
    bad.write_text("Q1\n1\n")
    r = vl("check", "wvs7", str(bad), "--codebook", str(cb), env=env)
    assert r.returncode == 2 and "no B_COUNTRY (or B_COUNTRY_ALPHA) column" in r.stderr and "Traceback" not in r.stderr


def test_cli_fetch_from_local_server(server, tmp_path):
    """The real `data fetch` command downloading a pinned registry entry, the server standing in for GitHub:
    the registry is the shipped one with its URLs' host swapped (VALUELENS_DATA_DIR isolates the cache)."""
    reg = F.registry()["moralchoice"]
    for f in reg.files:  # serve bytes whose checksums do not match: the shipped registry refuses them
        server.files["/" + f.url.split("/", 3)[3]] = b"not the real file\n"
    code = (f"import sys; from valuelens.data import fetch as F; from valuelens import cli\n"
            f"F.registry(); F._REGISTRY = {{k: v for k, v in F._REGISTRY.items()}}\n"
            f"import dataclasses\n"
            f"ds = F._REGISTRY['moralchoice']\n"
            f"F._REGISTRY['moralchoice'] = dataclasses.replace(ds, files=tuple(dataclasses.replace(f, url=f.url.replace("
            f"'https://raw.githubusercontent.com', {server.url!r})) for f in ds.files))\n"
            f"sys.argv = ['valuelens', 'data', 'fetch', 'moralchoice']; cli.main()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "200", "VALUELENS_DATA_DIR": str(tmp_path / "c")})
    assert r.returncode == 1, r.stderr
    assert "Licence: CC-BY-4.0" in r.stdout
    assert "downloaded 18 bytes, expected 268194" in r.stderr and "Traceback" not in r.stderr
    assert leftovers(tmp_path / "c") == []


def test_second_fetch_at_once_is_refused(server, root):
    import fcntl

    reg = registry(server, {"a.csv": A})
    root.mkdir(parents=True)
    with open(root / F.LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueLensError, match="another valuelens data fetch is using this cache"):
            F.fetch("toy", reg=reg)
    assert server.log == []
    assert F.fetch("toy", reg=reg).status == "fetched"  # released: works
