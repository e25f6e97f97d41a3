# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Must match DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE in settings: daphne applies it to replies too.
MAX_MESSAGE := 268435456

.PHONY: venv demo test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,bench]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) manage.py migrate --noinput
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) --websocket-max-message-size $(MAX_MESSAGE) example_project.asgi:application

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)
