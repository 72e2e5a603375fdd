# The two commands a new user needs: `make demo` and `make test`.
# Both create .venv if absent and install the project with pinned versions (constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aiops demo

test: $(STAMP)
	$(BIN)/python -m pytest

# Re-pin every dependency after a change to pyproject.toml.
constraints: $(STAMP)
	( echo "# Pinned versions of every dependency; the Makefile installs with pip install -c constraints.txt."; \
	  echo "# Regenerate after changing pyproject.toml: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable ) > constraints.txt

clean:
	rm -rf $(VENV) aiops-data .pytest_cache
