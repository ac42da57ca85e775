# The two commands: `make demo` runs the reference pipeline locally on the sample data,
# `make test` runs the tests. Both do all set-up first (scripts/setup.sh, a no-op once done).
.PHONY: setup demo test bench faults lint

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/kubesage run pipelines/image_classification.py

test: setup
	.venv/bin/pytest

bench: setup
	.venv/bin/python benchmarks/orchestration.py

faults: setup
	.venv/bin/python benchmarks/faults.py

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy kubesage
