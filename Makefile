# One-line targets; `make repro` and `make test` set everything up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY ?= true  # `make ui` too (the stages set it themselves: aevae.records.tracking)
# `make remote`: the directory that `dvc push` fills and `dvc pull` reads (for a team: a shared file system)
DVC_STORE ?= ../aevae-dvc-store
# `make exps`: the columns of `dvc exp show` to keep (a regular expression over the column names)
EXP_COLUMNS ?= Experiment|models\.vae\.latent_dim|reports/summary\.json:(vae/test/nll_iwae|vae/gen/fid|probe/vae/n10/acc_mean|anomaly/vae/auroc/mean)
export PATH := $(abspath $(VENV))/bin:$(PATH)  # the stages' `python` is the venv's

.PHONY: setup repro repro-all reference sprites remote exps test test-fast bench ui

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

repro: setup  # then each stage's wall time, from its MLflow run (aevae.records.timings)
	$(VENV)/bin/dvc repro; status=$$?; $(PY) -m aevae.records.timings; exit $$status

repro-all: setup  # every stage again, those whose committed results `make repro` would take included (dvc repro -f)
	$(VENV)/bin/dvc repro -f; status=$$?; $(PY) -m aevae.records.timings; exit $$status

reference: setup  # the reference study (studies/reference): published numbers beside ours
	$(VENV)/bin/dvc repro studies/reference/dvc.yaml

sprites: setup  # the sprites study (studies/sprites): disentanglement scores of VAE and beta-VAE -> reports/sprites.md
	$(VENV)/bin/dvc repro studies/sprites/dvc.yaml

remote: setup
	$(VENV)/bin/dvc remote add --default --force store $(DVC_STORE)

exps: setup
	$(VENV)/bin/dvc exp show --md --drop '.*' --keep '$(EXP_COLUMNS)'

test: setup  # one pytest-xdist worker per CPU; the tests of the shared study stay on one worker
	$(PY) -m pytest -n auto

test-fast: setup  # the tests marked fast (units, config, error paths; no training): under 2 minutes on 2 cores
	$(PY) -m pytest -n auto -m fast

bench: setup
	$(PY) benchmarks/throughput.py

ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1
