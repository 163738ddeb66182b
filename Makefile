# Two commands do all the set-up on a fresh clone:
#   make demo   creates .venv, starts the local stack, generates data and runs both pipelines
#   make test   creates .venv and runs lint (ruff, mypy) and the whole test suite (its own stack, stopped at the end)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv browser kinesalite clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The package's bytecode, as a pip install of the wheel writes it (PYTHONDONTWRITEBYTECODE would
	# otherwise make every command compile every module again).
	$(BIN)/python -m compileall -q pipeline
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/pipeline demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The browser test needs Debian's chromium and its driver; install them when missing (as root, or with sudo).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }

# kinesalite (npm): the second Kinesis implementation the stream tests also run against, and the bench's
# 1,000,000-record backlog (moto cannot be filled that fast).
KINESALITE := $(VENV)/node/node_modules/.bin/kinesalite
$(KINESALITE): | $(STAMP)
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error kinesalite@3.3.3

kinesalite: $(KINESALITE)

test: lint browser kinesalite
	$(BIN)/pytest

clean:
	-$(BIN)/pipeline local down
	rm -rf $(VENV) .local .env
