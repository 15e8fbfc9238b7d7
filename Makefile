# The two commands a newcomer runs on a fresh clone:  make run   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SAMPLE ?= samples/forward_blocked_service

.PHONY: run test venv venv-test lint test-jit test-nojit bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test

# (1) install and run the main job on the bundled sample; writes out/ and report.html
run: venv
	$(VENV)/bin/nfreplay run $(SAMPLE)/capture.pcap --rules $(SAMPLE)/rules.ipt --host $(SAMPLE)/host.toml \
	    --out out --report report.html
	@echo "report: $$(pwd)/report.html"

lint: venv-test
	$(VENV)/bin/ruff check nfreplay tests bench samples tools
	$(VENV)/bin/lint-imports

# JIT on with bounds checking and a fresh cache, then the kernels' Python source without the JIT
test-jit: venv-test
	rm -rf .numba_cache_ci
	NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=$$(pwd)/.numba_cache_ci $(VENV)/bin/python -m pytest -q -p no:cacheprovider

test-nojit: venv-test
	NUMBA_DISABLE_JIT=1 $(VENV)/bin/python -m coverage run --source=nfreplay -m pytest -q -p no:cacheprovider -m "not jit_only and not kernel and not slow"
	$(VENV)/bin/python -m coverage report --include='nfreplay/replay/*' | tail -1

# (2) install the test extras and run the whole suite
test: lint test-jit test-nojit

bench: venv
	$(PY) bench/bench.py

clean:
	rm -rf $(VENV) .numba_cache_ci out report.html
