# Two commands do all the set-up on a fresh clone:
#   make demo   creates .venv, starts the local stack, generates data and runs both pipelines
#   make test   creates .venv and runs lint and the whole test suite (its own stack, stopped at the end)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/pipeline demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest

clean:
	-$(BIN)/pipeline local down
	rm -rf $(VENV) .local .env
