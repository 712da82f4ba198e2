# The quick start: `make dev` brings the service up, `make test` runs the static checks and the tests.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: dev test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test,lint]"
	touch $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/mcp-jobs dev

test: lint
	$(VENV)/bin/pytest

# ruff (lint and format) over everything; mypy --strict over the package as users import it
# (`mcp_jobs`, laid out from workers/ and server/ by .ci/typecheck).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash .ci/typecheck

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(VENV)/bin/pip install --quiet -e ".[test,lint,bench]"
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache build dist
