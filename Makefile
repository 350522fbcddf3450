# Two commands: `make study` (venv, data, full study, report) and `make test` (venv, every test).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= full
GRIDS  ?= $(wildcard params/*.yaml)
# points at once: 2 for the full study (one core each, as it ran: more points per hour than one point on both
# cores); 1 for the quick profile, whose cold cache two kernels would fill twice over (helpers.bench.GRID_JOBS)
JOBS   ?= $(if $(filter quick,$(PROFILE)),1,2)
ANALYSES := 05_label_noise 07_scaling
# Test runs keep their records out of results/ (the committed study) and share one tensor cache.
TEST_ENV := STUDY_RESULTS=$(CURDIR)/.cache/test-results

.PHONY: venv data test test-unit test-notebooks study report bench clean

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

data: venv
	$(BIN)/python -m helpers data check >/dev/null 2>&1 || $(BIN)/python -m helpers data fetch
	$(BIN)/python -m helpers data check --spec external >/dev/null 2>&1 || $(BIN)/python -m helpers data fetch --external
	$(BIN)/python -m helpers data check

test: test-unit test-notebooks

test-unit: venv
	$(TEST_ENV) $(BIN)/python -m pytest tests

test-notebooks: venv
	$(TEST_ENV) $(BIN)/python -m pytest --nbval-lax -p no:randomly notebooks

# The grids, then the data exploration and the analysis notebooks on their records (rendered by the report).
# PROFILE=quick writes results-quick/ (git-ignored): the committed full study in results/ is never touched.
OUT := $(if $(filter quick,$(PROFILE)),$(CURDIR)/results-quick,$(CURDIR)/results)
study: venv data
	for grid in $(GRIDS); do STUDY_RESULTS=$(OUT) $(BIN)/python -m helpers sweep $$grid --profile $(PROFILE) \
	    --jobs $(JOBS) || exit 1; done
	mkdir -p $(OUT)/runs/01_data_exploration/default
	STUDY_RESULTS=$(OUT) $(BIN)/papermill --log-level WARNING notebooks/01_data_exploration.ipynb \
	    $(OUT)/runs/01_data_exploration/default/01_data_exploration.ipynb -p run_dir $(OUT)/runs/01_data_exploration/default
	for nb in $(ANALYSES); do mkdir -p $(OUT)/runs/$$nb/$(PROFILE) && STUDY_RESULTS=$(OUT) $(BIN)/papermill \
	    --log-level WARNING notebooks/$$nb.ipynb $(OUT)/runs/$$nb/$(PROFILE)/$$nb.ipynb -p profile $(PROFILE) \
	    -p run_missing False -p results_dir $(OUT) -p run_dir $(OUT)/runs/$$nb/$(PROFILE) || exit 1; done
	STUDY_RESULTS=$(OUT) $(BIN)/python -m helpers report --results $(OUT)

report: venv
	$(BIN)/python -m helpers report

bench: venv
	$(BIN)/python -m helpers bench

clean:
	rm -rf $(VENV) .cache .pytest_cache
