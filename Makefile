# One task runner for people, the README and CI.
#   make run    set up .venv, fetch data/ (and an empty feedback/), dvc repro (the whole pipeline)
#   make test   set up .venv, lint, type-check, build the docs, PostgreSQL and chromium if
#               missing, run the whole test suite (what CI runs)
#   make check  the quick loop: lint, type-check, docs, the tests that need no pipeline run,
#               server or browser
#   make full   the `full` profile: an ensemble of longer-trained CNNs, a longer augmented MLP
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: run full test check venv data lint typecheck docs pytest postgres chromium

venv: $(INSTALLED)

# Rebuilt only when the dependency pins change; otherwise reused as it is.
$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# feedback/: people's corrections (feedback.dvc); a fresh clone has none yet, so the export
# of an empty log writes the header-only file feedback.dvc records.
data: $(INSTALLED)
	digits fetch-data
	test -e feedback/feedback.csv || digits feedback export

run: data
	dvc repro

# A DVC experiment in the workspace: `dvc exp show` lists it, `git checkout params.yaml` (or
# `dvc exp apply`) returns to the defaults. It may move the champion, through the same gates.
FULL_PROFILE := -S train.cnn.members=4 -S train.cnn.max_epochs=30 -S train.ann.max_epochs=60 \
	-S promote.from_experiments=true
full: data
	dvc exp run --name full-$(shell date +%Y%m%d-%H%M%S) $(FULL_PROFILE)

lint: $(INSTALLED)
	ruff check .
	ruff format --check .

typecheck: $(INSTALLED)
	mypy

# --strict: a broken link, or a page missing from mkdocs.yml's nav, fails
docs: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet

pytest: $(INSTALLED)
	pytest

check: lint typecheck docs
	pytest -m "not slow" tests/code tests/data tests/model

# The team-server test runs PostgreSQL's own programs (initdb, pg_ctl): Debian's package,
# installed here when missing and we may (root), else named in one line.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing PostgreSQL (apt-get install postgresql)"; \
		apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; \
	else \
		echo "make test needs PostgreSQL's server programs: sudo apt-get install postgresql" >&2; \
		exit 1; \
	fi
	@# as root, the team server's account is let through private folders (setfacl) by the test
	@[ "$$(id -u)" != 0 ] || command -v setfacl >/dev/null || ! command -v apt-get >/dev/null || \
	{ echo "installing acl (apt-get install acl)"; \
	  apt-get update -qq && apt-get install -y -qq acl >/dev/null; }

# The page's browser test drives Debian's chromium (Playwright downloads no browser here).
chromium:
	@command -v chromium >/dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium (apt-get install chromium)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "make test needs Debian's chromium for the page test: sudo apt-get install chromium" >&2; \
		exit 1; \
	fi

test: lint typecheck docs postgres chromium pytest
