# A fresh clone needs only `make plan STACK=...` and `make test`: both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
# The CPU build of vLLM for the serving tests and `make bench` (serving-test/install.sh; ~2.5 GB, ~2.5 min once).
VLLM_INSTALLED := .venv-vllm/.serving-test-stamp
STACK ?=
FORMAT ?= text
# make check / make bench: a deployed STACK, or URL and KEY (or OPENAI_API_KEY in the environment), MODEL optional
URL ?=
KEY ?=
MODEL ?=
CONCURRENCY ?= 8
PROMPTS ?= 64
INPUT_LEN ?= 512
OUTPUT_LEN ?= 128
ENDPOINT_ARGS = $(if $(STACK),--stack "$(STACK)",--url "$(URL)") $(if $(KEY),--api-key "$(KEY)") \
	$(if $(MODEL),--model "$(MODEL)")
ENDPOINT_USAGE = STACK=<deployed stack> | URL=<endpoint> KEY=<api key> [MODEL=<served model name>]

.PHONY: plan test test-serving check bench plans clean

$(INSTALLED): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(VLLM_INSTALLED): serving-test/install.sh serving-test/requirements.txt serving-test/requirements.lock
	serving-test/install.sh
	touch $@

## make plan STACK=<name or stack file> [FORMAT=json]: what `pulumi preview` would create, offline
plan: $(INSTALLED)
	@test -n "$(STACK)" || { echo "usage: make plan STACK=<stack name or path to a stack file> [FORMAT=json]" >&2; \
	  echo "stacks: $$(ls stacks | sed -n 's/^Pulumi\.\(.*\)\.yaml$$/\1/p' | tr '\n' ' ')" >&2; exit 2; }
	@$(VENV)/bin/python -m fleet.plan "$(STACK)" --format "$(FORMAT)"

## make plans: plan every stack in stacks/
plans: $(INSTALLED)
	@for f in stacks/Pulumi.*.yaml; do $(VENV)/bin/python -m fleet.plan "$$f" >/dev/null && echo "ok  $$f" || exit 1; done

## make test: the offline test suite (mocks, cloud-init schema, shellcheck, systemd-analyze); with .venv-vllm
## (make test-serving makes it) also a stack served by real vLLM on this CPU (tests/serving)
test: $(INSTALLED)
	$(VENV)/bin/python -m pytest -q tests

## make test-serving: tests/serving only, installing .venv-vllm first
test-serving: $(INSTALLED) $(VLLM_INSTALLED)
	$(VENV)/bin/python -m pytest -q tests/serving

## make check STACK=<stack> | URL=<url> KEY=<key> [MODEL=<name>] [DIRECT=1]: PASS/FAIL lines about an endpoint
check: $(INSTALLED)
	@test -n "$(STACK)$(URL)" || { echo "usage: make check $(ENDPOINT_USAGE) [DIRECT=1]" >&2; exit 2; }
	@$(VENV)/bin/python -m fleet.check $(ENDPOINT_ARGS) $(if $(DIRECT),--direct)

## make bench STACK=<stack> | URL=<url> KEY=<key> [MODEL=<name>] [TOKENIZER=<hf id or dir>]
##            [CONCURRENCY=8 PROMPTS=64 INPUT_LEN=512 OUTPUT_LEN=128]: throughput and time to first token
bench: $(INSTALLED) $(VLLM_INSTALLED)
	@test -n "$(STACK)$(URL)" || { echo "usage: make bench $(ENDPOINT_USAGE) [TOKENIZER=<hf id or dir>]" >&2; exit 2; }
	@$(VENV)/bin/python -m fleet.bench $(ENDPOINT_ARGS) $(if $(TOKENIZER),--tokenizer "$(TOKENIZER)") \
	  --concurrency $(CONCURRENCY) --prompts $(PROMPTS) --input-len $(INPUT_LEN) --output-len $(OUTPUT_LEN)

clean:
	rm -rf $(VENV) .pytest_cache
