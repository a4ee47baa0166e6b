# compresslab: every target sets up .venv first when it is missing or pyproject.toml changed.
#   make test      the whole test suite (what CI runs)
#   make demo      the course pipeline end to end on a demo class (quick profile, offline, CPU)
#   make release   the student bundle under dist/ (EXCHANGE=/path: the JupyterHub exchange students submit to)
#   make bench     speed figures of the kit on this machine
#   make system-packages   bubblewrap (the grading sandbox) and chromium (the browser test), with apt-get, as root
#                          (CI does this)

PYTHON_BASE ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: setup test demo release bench labs clean system-packages

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV) || { \
	  python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' && python3 -m venv $(VENV); } || { \
	  echo "compresslab needs Python 3.11: install it, or run make PYTHON_BASE=/path/to/python3.11" >&2; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m autograde.demo

release: $(STAMP)
	$(PY) -m autograde.release $(if $(EXCHANGE),--exchange $(EXCHANGE))

labs: $(STAMP)
	$(PY) -m autograde.labs

bench: $(STAMP)
	for script in bench/*.py; do $(PY) $$script || exit 1; done

# What the kit needs from the system, as Debian packages: bubblewrap (`bwrap`, the grading sandbox: without it
# the cohort runner stops and names the package, or grades with --no-sandbox, recorded per submission), and
# chromium with chromium-driver (headless, for tests/test_browser.py: JupyterLab driven as a student uses it;
# recommends left out: desktop services a headless browser does not use; a font so that screenshots read).
system-packages:
	@missing=""; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null || missing="$$missing chromium fonts-liberation"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "install the package(s)$$missing (bubblewrap: the grading sandbox; chromium, chromium-driver:" \
	  "the browser test)" >&2; exit 1; fi

clean:
	rm -rf grading dist .pytest_cache
