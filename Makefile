# The two commands a newcomer needs: `make demo` and `make test`. The other targets refresh
# committed artefacts on purpose; `make test` never writes into the repository.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Must match DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE in settings: daphne applies it to replies too.
MAX_MESSAGE := 268435456

.PHONY: venv demo test screenshots soak first-paint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,bench]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) -m django_perspective.serve -b $(HOST) -p $(PORT) --websocket-max-message-size $(MAX_MESSAGE) example_project.asgi:application

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# The README's screenshots (docs/*.png), taken by the browser tests that check what they show.
screenshots: venv
	PERSPECTIVE_SCREENSHOTS=docs $(PY) -m pytest tests/test_browser.py tests/test_browser_ux.py -m screenshot -q

# The README's soak numbers (benchmarks/results/soak.json and soak.png).
soak: venv
	$(PY) -m benchmarks.soak --seconds 60 --clients 50 --out benchmarks/results

# The README's first-paint numbers (benchmarks/results/first_paint.json).
first-paint: venv
	$(PY) -m benchmarks.first_paint --runs 5 --out benchmarks/results/first_paint.json
