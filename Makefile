# The two commands the README leads with: `make reproduce` and `make test`.
# Each creates the virtualenv on first use, so a fresh clone needs nothing else.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= tiny
ONLY    ?=
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MPLBACKEND ?= Agg

.PHONY: setup reproduce test test-unit test-notebooks lab bench strip clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch 2.13.0 (CPU) is pinned by the `cpu` extra; the GPU stack is `pip install -e .[gpu]` (see README)
	$(PY) -m pip install --quiet -e '.[cpu,dev]'
	touch $(STAMP)

setup: $(STAMP)

reproduce: $(STAMP)  ## run every notebook in order (papermill), tiny profile by default
	$(PY) -m falcon_h1r_lib.reproduce --profile $(PROFILE) $(if $(ONLY),--only $(ONLY),)

test: $(STAMP) test-unit test-notebooks  ## unit tests, then every notebook under nbval with its defaults

test-unit: $(STAMP)
	$(PY) -m pytest tests/

test-notebooks: $(STAMP)
	# exit code 5 = no notebook collected, which is not a failure
	$(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/ || [ $$? -eq 5 ]

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

bench: $(STAMP)  ## kernel benchmark: ratios measured side by side in one run
	$(PY) -m falcon_h1r_lib.kernels.bench

strip:  ## remove outputs from the committed notebooks
	$(PY) -m falcon_h1r_lib.reproduce --strip

clean:
	rm -rf runs/
