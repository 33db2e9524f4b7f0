# The two commands a newcomer needs: `make run` and `make test`. Each installs what it needs.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
TEST_REDIS_URL ?= redis://127.0.0.1:6379
export TEST_DATABASE_URL TEST_REDIS_URL

.PHONY: install run stop test lint bench chaos clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,demo]"
	touch $(STAMP)

install: $(STAMP)

run: install
	scripts/run.sh

stop:  # the private PostgreSQL and Redis that `make run` may have started in .local/
	python3 scripts/services.py --stop

test: install
	$(BIN)/python scripts/services.py --database-url $(TEST_DATABASE_URL) --redis-url $(TEST_REDIS_URL)
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every chaos scenario at full scale, with real processes and private servers; prints a pass line each.
# Two lanes: the half-hour cron-and-soak test beside the others in a row. `make test` runs the short
# versions of scenarios 1, 2, 4, 7 and 12.
chaos: install
	$(BIN)/python scripts/services.py --database-url $(TEST_DATABASE_URL) --redis-url $(TEST_REDIS_URL)
	MILLRACE_CHAOS=full $(BIN)/python scripts/chaos_lanes.py -o timeout=2400

bench: install
	$(BIN)/python scripts/services.py --database-url $(TEST_DATABASE_URL) --redis-url $(TEST_REDIS_URL)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.heavy
	$(BIN)/python -m bench.dashboard
	$(BIN)/python -m bench.peers

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var
