# eventshop: `make run` starts the whole system, `make test` runs every test on the real services.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ES := $(BIN)/eventshop

.PHONY: run test venv up down status browser js-clients migrate lint schema bench clean graphiql-assets docs

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
	$(ES) all --processes 2

# Debian's chromium for the GraphiQL browser test (apt-get, like MariaDB; Playwright downloads nothing).
browser: venv
	$(ES) devstack browser

# The JavaScript clients of the e2e tests (GraphQL-over-HTTP audits, graphql-sse), npm ci from their lock.
JS := tests/e2e/js
$(JS)/node_modules/.installed: $(JS)/package.json $(JS)/package-lock.json | venv
	$(ES) devstack node
	cd $(JS) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

js-clients: $(JS)/node_modules/.installed

test: up browser js-clients
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy command shared projection gateway eventshop devstack migrations bench

# The documentation site (docs/, mkdocs.yml) into site/, offline; tests/unit/test_docs.py builds it in `make test`.
docs: venv
	$(BIN)/mkdocs build --strict

schema: venv
	$(ES) export-schema schema.graphql

bench: migrate
	$(BIN)/python -m bench

# The read model grown to 100k orders, every read and write path against its bound (not part of `make bench`).
.PHONY: bench-scale
bench-scale: migrate
	$(BIN)/python -m bench --only scale --output bench/results/scale-figures.json

# Re-create gateway/static/graphiql/vendor/ from gateway/graphiql/package-lock.json (needs npm; only to upgrade).
graphiql-assets: venv
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	cp gateway/graphiql/package.json gateway/graphiql/package-lock.json gateway/graphiql/.npmrc "$$tmp"/ && \
	(cd "$$tmp" && npm ci --ignore-scripts --no-audit --no-fund) && \
	$(BIN)/python gateway/graphiql/vendor.py "$$tmp/node_modules" gateway/static/graphiql/vendor

clean:
	rm -rf $(VENV) .devstack $(JS)/node_modules site
