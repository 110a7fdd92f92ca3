# mobieusLearn — every command installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install run test test-fast lint bench k8s-validate up down clean system-deps

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing Python dependencies into $(VENV) (pinned by constraints.txt)..."
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

system-deps:
	@scripts/ensure-system-deps.sh test

## Start the whole system (embedded default unless LEARN_POSTGRES_URL / LEARN_AMQP_URL are set).
run: install
	@$(BIN)/python -m services run

## Run the whole test suite on real PostgreSQL and RabbitMQ.
test: install system-deps
	@PYTEST_ARGS="$(PYTEST_ARGS)" scripts/run-tests.sh

## The suite without the slow fault-injection and load tests (CI runs everything).
test-fast: install system-deps
	@$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

lint: install
	@$(BIN)/ruff check .
	@$(BIN)/mypy

bench: install
	@scripts/ensure-system-deps.sh bench
	@$(BIN)/python -m bench

k8s-validate: install
	@PATH="$(CURDIR)/$(BIN):$$PATH" deploy/k8s/validate.sh

up:
	docker compose -f deploy/compose.yaml up --build

down:
	docker compose -f deploy/compose.yaml down

clean:
	rm -rf .data test-output
