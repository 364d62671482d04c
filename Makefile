# A fresh clone needs only `make plan STACK=...` and `make test`: both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
STACK ?=
FORMAT ?= text

.PHONY: plan test plans clean

$(INSTALLED): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## make plan STACK=<name or stack file> [FORMAT=json]: what `pulumi preview` would create, offline
plan: $(INSTALLED)
	@test -n "$(STACK)" || { echo "usage: make plan STACK=<stack name or path to a stack file> [FORMAT=json]" >&2; \
	  echo "stacks: $$(ls stacks | sed -n 's/^Pulumi\.\(.*\)\.yaml$$/\1/p' | tr '\n' ' ')" >&2; exit 2; }
	@$(VENV)/bin/python -m fleet.plan "$(STACK)" --format "$(FORMAT)"

## make plans: plan every stack in stacks/
plans: $(INSTALLED)
	@for f in stacks/Pulumi.*.yaml; do $(VENV)/bin/python -m fleet.plan "$$f" >/dev/null && echo "ok  $$f" || exit 1; done

## make test: the offline test suite (mocks, cloud-init schema, shellcheck, systemd-analyze)
test: $(INSTALLED)
	$(VENV)/bin/python -m pytest -q tests

clean:
	rm -rf $(VENV) .pytest_cache
