# vitcycle developer commands. `make install` builds .venv; every other target installs first if needed.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
# These exact releases lie on the build machines' local disk; an unpinned torch pulls a multi-GB download.
TORCH   ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test lint quickstart fit eval bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check vitcycle tests benchmarks

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
