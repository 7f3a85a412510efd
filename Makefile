# eventshop: `make run` starts the whole system, `make test` runs every test on the real services.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ES := $(BIN)/eventshop

.PHONY: run test venv up down status migrate lint schema bench clean

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

up: venv
	$(ES) devstack up

down: venv
	$(ES) devstack down

status: venv
	$(ES) devstack status

migrate: up
	$(ES) migrate

run: migrate
	@test -f .env || { cp .env.example .env && echo "created .env from .env.example (development JWT_SECRET)"; }
	@echo "GraphiQL: http://$${HOST:-127.0.0.1}:$${PORT:-8000}/graphql"
	@echo 'Auth: run "$(ES) token --role admin" (or --role customer --user-id ID) and paste {"Authorization": "Bearer <token>"} into GraphiQL'"'"'s headers'
	$(ES) all

test: up
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy command shared projection gateway eventshop devstack migrations

schema: venv
	$(ES) export-schema schema.graphql

bench: migrate
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .devstack
