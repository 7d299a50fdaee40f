# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch. On a CUDA machine: make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-fast lint docs browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(PY) demo.py

# Two workers, a test file each at a time (its module fixtures built once): most tests wait on one interpreter's
# imports or a subprocess, so the second core is otherwise idle. The slowest tests are listed at the end.
PYTEST_WORKERS ?= 2
test: install lint docs browser
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=15

# The documentation site (mkdocs-material, mkdocstrings; the dev extra) into site/. --strict: a broken link, anchor or
# API reference fails the build. The configuration and command-line references are generated from the code.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Debian's chromium (the browser tests) and espeak-ng (real speech for the no-speech check): installed when missing,
# where apt-get can (as root). Where they cannot be had, those tests skip, except under CI=true, where they fail.
browser:
	@missing=""; for tool in chromium espeak-ng; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
		echo "note:$$missing missing and could not be installed here; the tests that need them will be skipped"

# ruff: pycodestyle, pyflakes and import order at line length 119, and the formatter (pyproject.toml).
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The inner loop: everything but the tests marked `slow` (multi-process training, fresh interpreters, Large size).
test-fast: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

clean:
	rm -rf $(VENV) demo_output .pytest_cache site
