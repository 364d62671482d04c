# A fresh clone needs only `make plan STACK=...` and `make test`: each installs what it needs on first use (.venv;
# for make test also the Debian tools it checks the user-data with and .venv-vllm, the CPU build of vLLM).
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
# make compare: MODEL (a Hugging Face id), optional MAX_MODEL_LEN, CONCURRENCY with TOKENS, CLOUDS, LIMIT, ALL=1,
# SNIPPET=n (row n's stack file)
SNIPPET ?=
MAX_MODEL_LEN ?=
TOKENS ?=
CLOUDS ?=
LIMIT ?=
COMPARE_ARGS = $(if $(MAX_MODEL_LEN),--max-model-len "$(MAX_MODEL_LEN)") \
	$(if $(filter command line,$(origin CONCURRENCY)),--concurrency "$(CONCURRENCY)") $(if $(TOKENS),--tokens "$(TOKENS)") \
	$(if $(CLOUDS),--clouds "$(CLOUDS)") $(if $(LIMIT),--limit "$(LIMIT)") $(if $(ALL),--all) \
	$(if $(SNIPPET),--snippet "$(SNIPPET)")

.PHONY: plan test test-offline test-serving system-tools check bench plans vm-lock vm-lock-check dev-lock vllm-flags clean compare \
	catalog-add prices wake serve-local usage

$(INSTALLED): requirements.txt requirements-dev.txt requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c requirements-dev.lock
	touch $@

$(VLLM_INSTALLED): serving-test/install.sh serving-test/requirements.txt serving-test/requirements.lock
	serving-test/install.sh
	touch $@

## make plan STACK=<name or stack file> [FORMAT=json]: what `pulumi preview` would create, offline
plan: $(INSTALLED)
	@test -n "$(STACK)" || { echo "usage: make plan STACK=<stack name or path to a stack file> [FORMAT=json]" >&2; \
	  echo "stacks: $$(ls stacks | sed -n 's/^Pulumi\.\(.*\)\.yaml$$/\1/p' | tr '\n' ' ')" >&2; exit 2; }
	@$(VENV)/bin/python -m cli.plan "$(STACK)" --format "$(FORMAT)"

## make wake STACK=<deployed stack with officeHours> [HOURS=2] [DRY_RUN=1]: start its fleet now, outside its hours
wake: $(INSTALLED)
	@test -n "$(STACK)" || { echo "usage: make wake STACK=<deployed stack with officeHours> [HOURS=2] [DRY_RUN=1]" >&2; exit 2; }
	@$(VENV)/bin/python -m cli.wake "$(STACK)" --hours "$(or $(HOURS),2)" $(if $(DRY_RUN),--dry-run)

## make compare MODEL=<hf id> [MAX_MODEL_LEN=n] [CONCURRENCY=n TOKENS=n] [CLOUDS=aws,gcp,azure] [FORMAT=json]
##              [LIMIT=n] [ALL=1] [SNIPPET=n]: every way to serve the model across clouds, regions and precisions,
##              in the plan's order (cheapest first); SNIPPET=n prints row n's stack file
compare: $(INSTALLED)
	@test -n "$(MODEL)" || { echo "usage: make compare MODEL=<hugging face id> [MAX_MODEL_LEN=n] [CONCURRENCY=n TOKENS=n] [CLOUDS=aws,gcp,azure] [FORMAT=json]" >&2; exit 2; }
	@$(VENV)/bin/python -m cli.compare "$(MODEL)" --format "$(FORMAT)" $(COMPARE_ARGS)

## make catalog-add MODEL=<hf id> [REVISION=<sha>]: record a model's architecture from the hub in catalog/models.yaml
catalog-add: $(INSTALLED)
	@test -n "$(MODEL)" || { echo "usage: make catalog-add MODEL=<hugging face id> [REVISION=<commit>]" >&2; exit 2; }
	@$(VENV)/bin/python -m cli.catalog_add "$(MODEL)" $(if $(REVISION),--revision "$(REVISION)")

## make prices [CLOUDS=aws,gcp,azure]: refresh catalog/prices.yaml from the clouds' price lists (network; AWS needs
## boto3 and credentials, GCP an API key in GCP_API_KEY)
prices: $(INSTALLED)
	@$(VENV)/bin/python -m cli.prices $(if $(CLOUDS),--clouds "$(CLOUDS)")

## make plans: plan every stack in stacks/
plans: $(INSTALLED)
	@for f in stacks/Pulumi.*.yaml; do $(VENV)/bin/python -m cli.plan "$$f" >/dev/null && echo "ok  $$f" || exit 1; done

## make test: everything (what CI runs), installing first what is missing: cloud-init, systemd and apt's tools
## (apt-get, as root or with sudo), .venv, and .venv-vllm for the stack served by real vLLM on this CPU
test: system-tools $(INSTALLED) $(VLLM_INSTALLED)
	FLEET_REQUIRE_SERVING=1 $(VENV)/bin/python -m pytest -q tests

## make test-offline: the fast loop while editing: everything but the real vLLM server and what needs PyPI
test-offline: system-tools $(INSTALLED)
	$(VENV)/bin/python -m pytest -q tests --ignore=tests/serving -m "not network"

## make test-serving: tests/serving only, installing .venv-vllm first
test-serving: $(INSTALLED) $(VLLM_INSTALLED)
	FLEET_REQUIRE_SERVING=1 $(VENV)/bin/python -m pytest -q tests/serving

system-tools:
	@scripts/system-tools.sh

## make check STACK=<stack> | URL=<url> KEY=<key> [MODEL=<name>] [DIRECT=1]: PASS/FAIL lines about an endpoint
check: $(INSTALLED)
	@test -n "$(STACK)$(URL)" || { echo "usage: make check $(ENDPOINT_USAGE) [DIRECT=1]" >&2; exit 2; }
	@$(VENV)/bin/python -m cli.check $(ENDPOINT_ARGS) $(if $(DIRECT),--direct)

## make serve-local STACK=<stack> [MODEL_DIR=<local model folder>] [PORT=8000] [KEY=<api key>]: the stack's vLLM
##            launcher on this machine, with the CPU build of vLLM (.venv-vllm) and the tiny model or MODEL_DIR's
serve-local: $(INSTALLED) $(VLLM_INSTALLED)
	@test -n "$(STACK)" || { echo "usage: make serve-local STACK=<stack> [MODEL_DIR=<local model folder>] [PORT=8000] [KEY=<api key>]" >&2; exit 2; }
	@$(VENV)/bin/python -m cli.serve_local "$(STACK)" $(if $(MODEL_DIR),--model-dir "$(MODEL_DIR)") \
	  $(if $(PORT),--port "$(PORT)") $(if $(KEY),--api-key "$(KEY)")

## make bench STACK=<stack> | URL=<url> KEY=<key> [MODEL=<name>] [TOKENIZER=<hf id or dir>]
##            [CONCURRENCY=8 PROMPTS=64 INPUT_LEN=512 OUTPUT_LEN=128]: throughput and time to first token
bench: $(INSTALLED) $(VLLM_INSTALLED)
	@test -n "$(STACK)$(URL)" || { echo "usage: make bench $(ENDPOINT_USAGE) [TOKENIZER=<hf id or dir>]" >&2; exit 2; }
	@$(VENV)/bin/python -m cli.bench $(ENDPOINT_ARGS) $(if $(TOKENIZER),--tokenizer "$(TOKENIZER)") \
	  --concurrency $(CONCURRENCY) --prompts $(PROMPTS) --input-len $(INPUT_LEN) --output-len $(OUTPUT_LEN)

## make usage STACK=<stack> [SINCE=7d] [FORMAT=json]: per API key, requests, tokens, GPU hours and cost of the period,
## from the cloud's monitoring (the user's credentials; docs/usage.md)
usage: $(INSTALLED)
	@test -n "$(STACK)" || { echo "usage: make usage STACK=<stack> [SINCE=7d] [FORMAT=json]" >&2; exit 2; }
	@$(VENV)/bin/python -m cli.usage "$(STACK)" --since "$(or $(SINCE),7d)" --format "$(FORMAT)"

## make vm-lock: resolve the VMs' packages again (cloud-init/vllm-requirements.in -> vllm-requirements.txt, and what
## each pinned wheel requires -> vllm-requirements.requires.json; PyPI), at the CPU serving proof's versions
## (serving-test/requirements.lock) wherever the CUDA build of vLLM allows. After a vLLM bump, or when vm-lock-check
## reports a move that is wanted.
vm-lock: $(INSTALLED)
	@$(VENV)/bin/python scripts/vm_lock.py write

## make vm-lock-check: does resolving again (PyPI) still give the lock, and does PyPI still serve each pinned file
## as recorded? Exit 1 with the differences when not. A maintainer's or the weekly workflow's job, not a test.
vm-lock-check: $(INSTALLED)
	@$(VENV)/bin/python scripts/vm_lock.py check

## make dev-lock: pin .venv's packages again (requirements-dev.txt -> requirements-dev.lock; PyPI), after editing
## requirements*.txt
dev-lock: $(INSTALLED)
	@{ sed -n '1,3p' requirements-dev.lock; $(VENV)/bin/uv pip compile requirements-dev.txt --universal \
	  --python-version 3.11 --no-annotate --no-header --quiet; } >requirements-dev.lock.new
	@mv requirements-dev.lock.new requirements-dev.lock

## make vllm-flags: list `vllm serve`'s flags again from .venv-vllm's vLLM (catalog/vllm-serve-flags.json), after a bump
vllm-flags: $(VLLM_INSTALLED)
	.venv-vllm/bin/python serving-test/serve_flags.py >catalog/vllm-serve-flags.json

clean:
	rm -rf $(VENV) .pytest_cache
