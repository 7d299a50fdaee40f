# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch. On a CUDA machine: make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-fast lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(PY) demo.py

test: install lint
	$(PY) -m pytest -q

# ruff: pycodestyle, pyflakes and import order at line length 119, and the formatter (pyproject.toml).
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The inner loop: everything but the tests marked `slow` (multi-process training, fresh interpreters, Large size).
test-fast: install
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) demo_output .pytest_cache
