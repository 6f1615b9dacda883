# Two commands matter: `make serve` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install serve test lint bench bench-mirror bench-tools bench-servers clean browser nginx axe

# The tests also load a third-party plugin by entry point, as an installed package.
TEST_PLUGINS := tests/plugins/api_key

$(STAMP): pyproject.toml $(TEST_PLUGINS:%=%/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]' $(TEST_PLUGINS:%=-e %)
	touch $(STAMP)

install: $(STAMP)

HOST ?= 127.0.0.1
PORT ?= 8080

serve: install
	$(BIN)/packyard serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# axe-core (pinned in tests/axe/package.json) for the accessibility browser test.
axe:
	@command -v npm >/dev/null 2>&1 && cd tests/axe && npm install --no-audit --no-fund --silent \
	  || echo "npm is missing: the accessibility test will be skipped"

# Browser tests drive Debian's Chromium (Playwright's own download does not work here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install it (apt-get install chromium) for the browser tests"; fi; }

# The scale-out test puts Debian's nginx in front of two web processes.
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	  else echo "nginx is missing: install it (apt-get install nginx) for the scale-out test"; fi; }

test: install browser nginx axe
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# Packyard against pypiserver and devpi; writes bench/RESULTS.md. BENCH_MODE=full for the
# long run. Then a 45 MiB upload and download through file:// and s3:// (bench/storage.py).
# nginx (the static ceiling) and wrk come from Debian.
BENCH_MODE ?= quick
bench: bench-tools
	$(BIN)/python bench/run.py --mode $(BENCH_MODE) $(BENCH_ARGS)
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/mirror.py

# Packyard's pull-through cache against devpi's mirror, on one local upstream; writes
# bench/MIRROR.md (make bench runs it too).
bench-mirror: bench-tools
	$(BIN)/python bench/mirror.py

# uWSGI (what `packyard serve` runs) against granian, gunicorn, pyruvate and waitress on
# Packyard's own app; writes bench/SERVERS.md.
bench-servers: bench-tools
	$(BIN)/python bench/servers.py $(BENCH_ARGS)

bench-tools: install
	@command -v nginx >/dev/null 2>&1 && command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null; \
	  else echo "nginx and wrk are missing: apt-get install nginx wrk"; exit 1; fi; }
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test,bench]'

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
