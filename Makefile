# One command each: `make demo` (set up, then run the demo), `make test` (set up, then
# run every check and the whole test suite). Both create .venv/ on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install kafka-jars demo test lint unit clean readme-settings

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# Apache Kafka's jars from Maven Central, cached in ~/.cache/stream-rec (once per machine).
kafka-jars: install
	$(BIN)/python -m stream_rec.services fetch-kafka

demo: install
	$(BIN)/stream-rec demo $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict stream_rec
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest tests/unit stream_rec

test: install kafka-jars lint
	$(BIN)/pytest $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# The README's settings table, printed by the code (a test checks that they agree).
readme-settings: install
	$(BIN)/python -c "import re, pathlib, subprocess; \
	p = pathlib.Path('README.md'); table = subprocess.run(['$(BIN)/stream-rec', 'settings', '--markdown'], \
	capture_output=True, text=True, check=True).stdout.strip(); \
	p.write_text(re.sub(r'(?s)<!-- settings:start -->.*<!-- settings:end -->', \
	lambda m: '<!-- settings:start -->\n' + table + '\n<!-- settings:end -->', p.read_text()))"
