# Conveniences around scripts/; the README's two commands need no make.
PYTHON := .venv/bin/python

.PHONY: run test test-fast lint protos bench bench-enforcement bench-verdicts bench-signers \
	bench-crl bench-ocsp bench-registry

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

# Benchmarks at full size print the figures quoted in the README; the test
# run covers each at smoke size (pytest -m benchmark) so they cannot rot.
bench: bench-enforcement bench-verdicts bench-signers bench-crl bench-ocsp bench-registry

bench-enforcement:
	$(PYTHON) -m benchmarks.enforcement

bench-verdicts:
	$(PYTHON) -m benchmarks.verdicts

bench-signers:
	$(PYTHON) -m benchmarks.signers

bench-crl:
	$(PYTHON) -m benchmarks.crl

bench-ocsp:
	$(PYTHON) -m benchmarks.ocsp

bench-registry:
	$(PYTHON) -m benchmarks.registry
