# The README's commands. `make run` and `make test` work on a fresh machine.
VENV    ?= .venv
PY      := $(VENV)/bin/python
# The CPU build of torch (a local file on the machines this project runs on); the
# package itself only asks for torch>=2.4, so a GPU node can bring its own build.
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test lint bench postgres

# Also the example task package (README: Sweep your own model), which the tests sweep.
$(STAMP): pyproject.toml examples/digits-cnn/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -qq --find-links /opt/wheels "$(TORCH)"
	$(PY) -m pip install -qq -e ".[dev]"
	$(PY) -m pip install -qq -e examples/digits-cnn
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/sweep up

# PostgreSQL at 127.0.0.1:5432 backs half the tests; start it if it is installed and down.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect 15 main start || true

# The layering contracts first: a wrong import fails fast, in CI too.
test: $(STAMP) postgres
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check sweep api migrations tests benchmarks examples
	$(VENV)/bin/ruff format --check sweep api migrations tests benchmarks examples
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples/digits-cnn/digits_cnn
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	for name in overhead claims faults api load batched end_to_end regularization importance; do \
		$(PY) -m benchmarks.$$name || exit 1; done
