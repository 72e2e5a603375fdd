# The two commands a new user needs: `make demo` and `make test`.
# Both create .venv if absent and install the project with pinned versions (constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-dates install browser constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aiops demo

test: $(STAMP) browser
	$(BIN)/python -m pytest

# The suite three times, with the wall clock of every Python process moved to another date
# (time-machine, see scripts/test_dates.sh): no result may depend on the date or hour a run
# happens on. Not part of `make test` (it takes three suite runs).
test-dates: $(STAMP) browser
	scripts/test_dates.sh

# Debian's Chromium for the dashboard's headless-browser test: Playwright drives it and never
# downloads a browser of its own. Installed once (as root), silent when already there.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser test ..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# Re-pin every dependency after a change to pyproject.toml.
constraints: $(STAMP)
	( echo "# Pinned versions of every dependency; the Makefile installs with pip install -c constraints.txt."; \
	  echo "# Regenerate after changing pyproject.toml: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable ) > constraints.txt

clean:
	rm -rf $(VENV) aiops-data .pytest_cache
