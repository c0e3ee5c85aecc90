# The two commands: `make run` and `make test`. Both install what they need first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: run test install venv node chromium bench docs clean

run: install
	$(PY) scripts/run_stack.py

test: install chromium
	$(PY) scripts/redis_local.py -- $(PY) -m pytest $(PYTEST_ARGS)

install: venv node

venv: $(STAMP)
$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

node: node_modules/.package-lock.json
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# Browser tests drive Debian's Chromium (Playwright's own browser download is not used).
chromium:
	@command -v chromium >/dev/null || test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

bench: install
	$(PY) scripts/redis_local.py -- $(PY) bench/event_latency.py --predict-rate 50
	$(PY) bench/anomaly_eval.py
	$(PY) scripts/redis_local.py -- $(PY) bench/telemetry.py

docs: venv
	$(PY) manage.py events_doc > docs/events.md

clean:
	rm -rf $(VENV) node_modules staticfiles .run
