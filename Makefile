# The two commands: `make demo` runs the reference pipeline locally on the sample data,
# `make test` runs the tests (two workers, each module whole on one; then the fault campaign,
# which restarts the Docker engine, alone). Both do all set-up first (scripts/setup.sh, a
# no-op once done).
# `make test-fast` runs the tests that need neither Docker nor a server process nor a browser,
# with no Docker engine reachable (it sets up the Python environment only).
.PHONY: setup demo test test-fast bench faults lint

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/kubesage run pipelines/image_classification.py

test: setup
	.venv/bin/pytest -n 2 --dist loadfile -m "not last" --durations=15
	.venv/bin/pytest -m last

test-fast:
	@scripts/setup.sh --python
	env -u DOCKER_CONTEXT -u PYTHONDONTWRITEBYTECODE DOCKER_HOST=unix:///nonexistent/docker.sock \
		.venv/bin/pytest \
		-n 2 --dist worksteal -m "not docker and not server and not browser and not last"

bench: setup
	.venv/bin/python benchmarks/orchestration.py

faults: setup
	.venv/bin/python benchmarks/faults.py

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy kubesage
