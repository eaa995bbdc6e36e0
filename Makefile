# Conveniences around scripts/; the README's two commands need no make.
PYTHON := .venv/bin/python

.PHONY: run test test-fast lint protos bench bench-signers

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

# Benchmarks print figures for the README; the test suite runs each at smoke
# size (pytest -m benchmark) so they cannot rot.
bench: bench-signers

bench-signers:
	$(PYTHON) -m benchmarks.signers
