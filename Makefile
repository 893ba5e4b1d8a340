# orchestral-stream: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run demo test faults reliability unit lint format bench-core clean lock

setup: $(STAMP)

# Re-install only when the dependencies change. Exact versions with their hashes, from the lock
# (`make lock` writes it from pyproject.toml); then the project itself, editable.
$(STAMP): pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# After changing a dependency in pyproject.toml: both locks, hashes included (README, Development).
lock: setup
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 --quiet -o requirements/main.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 --quiet -o requirements/dev.lock

# The main job: a local Kafka broker (started if none answers) and the worker. From the
# checkout's root, where the dev broker (devtools/, not in the wheel) is importable.
run: setup
	$(BIN)/python -m processors.cli run

# The chat demo: broker, worker and the demo agent in the background (logs in var/demo/), the
# chat in the foreground on thread `demo`; `make demo POLICY=merge` (or queue, reject...), and
# `AGENT=mymodule:reply` for your own executor function.
POLICY ?= interrupt
AGENT ?= processors.executor.demo:reply
demo: setup
	$(BIN)/python -m devtools.demo --policy $(POLICY) --agent $(AGENT)

# Unit and integration tests; the fault scenarios (short versions) are `make faults`, CI runs both.
test: setup
	$(BIN)/python -m pytest -m 'not reliability'

# The fault scenarios at a short size (SIGKILLs, a lost worker, a joining worker, a broker
# restart, bad input), against the oracle: what `make reliability` runs at full size.
faults: setup
	$(BIN)/python -m pytest -m reliability

# The fault scenarios at full size (issue 5); their short versions run in `make test`.
reliability: setup
	ORCHESTRAL_RELIABILITY=full ORCHESTRAL_RELIABILITY_REPORT=$${ORCHESTRAL_RELIABILITY_REPORT:-reliability-report.jsonl} \
		$(BIN)/python -m pytest -m reliability -s --timeout 1200

unit: setup
	$(BIN)/python -m pytest -m 'not integration'

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-core: setup
	$(BIN)/python -m benchmarks.core_bench

# Everything against a real broker (KAFKA_BOOTSTRAP_SERVERS, else one started for the run);
# sizes via BENCH_* env vars, see benchmarks/kafka_bench.py. Writes BENCHMARKS.md.
.PHONY: bench
bench: setup
	$(BIN)/python -m benchmarks.kafka_bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
