# adaface_lab — the commands the README names.  Variables: TORCH_SPEC, VENV, PYTHON (see scripts/setup.sh).
VENV ?= .venv
ifeq ($(VENV),system)
  PY := python3
else
  PY := $(VENV)/bin/python
endif
export VENV

.PHONY: setup lab test bench reports exercises site clean

setup:
	@bash scripts/setup.sh

## the app on its built-in default (no download)
lab: setup
	$(PY) -m streamlit run app/streamlit_app.py

## the whole test suite (unit, property, notebooks under nbval, app with AppTest and Chromium)
test: setup
	bash scripts/test.sh

## speed figures: ratios measured side by side in one run (copied into the README)
bench: setup
	$(PY) -m bench

## render every notebook headless; figures as HTML and PNG into reports/
reports: setup
	$(PY) -m adaface_lab.cli reports

## the exercises (otter-grader): student notebooks and autograders into exercises/dist/
exercises: setup
	$(PY) exercises/build.py

## the course site into site/ from the notebooks as stored (no outputs); SITE_EXECUTE=true runs them first
site: setup
	$(PY) course/build.py

clean:
	rm -rf .pytest_cache .hypothesis reports
