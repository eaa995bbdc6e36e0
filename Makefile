# Conveniences around scripts/; the README's two commands need no make.
PYTHON := .venv/bin/python

.PHONY: run test test-fast lint protos bench bench-enforcement bench-verdicts

run:
	scripts/run.sh

test:
	scripts/test.sh

test-fast:
	$(PYTHON) -m pytest -m "not slow"

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

protos:
	$(PYTHON) scripts/gen_protos.py

# Benchmarks at full size; the test run covers them at smoke size only.
bench: bench-enforcement bench-verdicts

bench-enforcement:
	$(PYTHON) -m benchmarks.enforcement

bench-verdicts:
	$(PYTHON) -m benchmarks.verdicts
