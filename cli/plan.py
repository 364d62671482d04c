"""Offline plan: runs the project's own __main__.py under Pulumi's mocks with a stack file's config and prints
what `pulumi preview` would create, with the outputs (cost, quota, endpoint) and the rendered user-data.

    python -m cli.plan codellama-prod            # or a path to a stack file
    python -m cli.plan codellama-prod --format json

Nothing is created and no cloud is asked: the cloud's data sources and computed outputs are answered by the
component's offline_invoke/offline_state. Secrets of the stack file (`secure:`) are shown as [secret].
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import logging
import math
import runpy
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet import stack_yaml
from fleet.errors import SHOWN_SECRET, ConfigError
from fleet.spec import SECRET_KEYS

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "vllm-fleet"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value on the wire
# What the program gets for a secret of the stack file (and a generated key): never shown, never on a VM.
SECRET_STAND_IN = "offline-plan-secret-"


class PlanError(Exception):
    """A stack that cannot be planned; its message is for the user."""


@dataclass
class Step:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    inputs: dict[str, Any]
    # Resource options that change what later `pulumi up`s do (ignoreChanges, deleteBeforeReplace, ...).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    stack: str
    steps: list[Step] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    user_data: str | None = None
    policy_violations: list[str] = field(default_factory=list)

    def preview_json(self) -> dict[str, Any]:
        """The shape of `pulumi preview --json`: steps with op, urn, type, newState.inputs; outputs."""
        return {
            # "options" is not in `pulumi preview --json`: the resource options the plan recorded.
            "steps": [{"op": "create", "urn": s.urn, "type": s.type,
                       "newState": {"type": s.type, "urn": s.urn, "custom": s.custom, "parent": s.parent,
                                    "inputs": s.inputs}, "options": s.options} for s in self.steps],
            "outputs": {k: (SHOWN_SECRET if k in self.secret_outputs else v) for k, v in self.outputs.items()},
            "diagnostics": [{"severity": "warning", "message": w} for w in self.warnings]
            + [{"severity": "error", "message": v} for v in self.policy_violations],
            "changeSummary": {"create": len(self.steps)},
            # Not in `pulumi preview --json`: the decoded cloud-init of the VMs, as the plan shows it.
            "userData": self.user_data,
        }


def stack_file(stack: str) -> Path:
    path = Path(stack)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise PlanError(f"no stack file {stack}: give a stack name of stacks/ or the path of a Pulumi.<stack>.yaml")
        return path
    path = ROOT / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
        raise PlanError(f"no stack {stack!r}: stacks/ has {', '.join(known)}")
    return path


def stack_name_of(path: Path) -> str:
    return path.name[len("Pulumi."):-len(".yaml")] if path.name.startswith("Pulumi.") else path.stem


def stack_config(path: Path) -> tuple[dict[str, str], list[str]]:
    """The config a stack file gives the program, exactly as the Pulumi CLI passes it (fleet/stack_yaml.py): each
    top-level value as text, secrets replaced by a stand-in derived from the ciphertext (only the CLI can decrypt
    a `secure:` value; a new ciphertext gives a new stand-in, as the cloud would see a new value)."""
    try:
        values = stack_yaml.read(path.read_text(), PROJECT)
    except stack_yaml.StackFileError as error:
        raise PlanError(f"{path}: {error}") from None
    for key, value in values.items():
        _refuse_plain_secret_leaves(key, value)
    config = {key: value.text(_stand_in) for key, value in values.items()}
    return config, [key for key, value in values.items() if value.secure]


def stack_spec(stack: str):
    """The FleetSpec of a stack file (the stack's name, or a path), as the program parses it, with the replicas the
    sizing gives the group."""
    from fleet.sizing import size, with_sized_replicas
    from fleet.spec import parse_spec

    path = stack_file(stack)
    config, secret_keys = stack_config(path)
    prefix = f"{PROJECT}:"
    spec = parse_spec(stack_name_of(path), {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)},
                      {k[len(prefix):] for k in secret_keys})
    return with_sized_replicas(spec, size(spec))


def _stand_in(ciphertext: str) -> str:
    return f"{SECRET_STAND_IN}{hashlib.sha256(ciphertext.encode()).hexdigest()[:24]}"


def _refuse_plain_secret_leaves(key: str, value: stack_yaml.ConfigValue) -> None:
    """Every leaf of a secret key (apiKey, apiKeys, hfToken) must be `secure:`. The program cannot check it: Pulumi
    marks a whole top-level key secret when any of its leaves is, so a plain-text key next to secure ones would
    reach `pulumi up` unnoticed (and is committed to git). A key with no secure leaf at all is the program's to
    refuse, under `pulumi up` too."""
    name = key.split(":", 1)[1] if key.startswith(f"{PROJECT}:") else None
    if name not in SECRET_KEYS or not value.secure:
        return
    for path, leaf in stack_yaml.leaves(value.tree, name):
        if not isinstance(leaf, stack_yaml.Secret):
            raise ConfigError(path, "<plain text>",
                              f"is a secret and must be stored encrypted like the rest of {name}: pulumi config set "
                              f"--secret --path '{path}' <value> (and remove the plain value from the stack file)")


def _show(value: Any) -> Any:
    """Inputs as the plan shows them: secrets masked, numbers as Pulumi records them."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG):
            return SHOWN_SECRET
        return {k: _show(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_show(v) for v in value]
    from pulumi import AssetArchive, FileAsset, StringAsset  # loaded by run() already

    if isinstance(value, StringAsset):
        return {"asset": value.text}
    if isinstance(value, FileAsset):  # a file of this checkout, or of an installed package (after site-packages/)
        path = Path(value.path)
        return {"file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.as_posix().split(
            "site-packages/")[-1]}
    if isinstance(value, AssetArchive):
        return {"archive": {name: _show(asset) for name, asset in value.assets.items()}}
    return value


def _nested(inputs: dict[str, Any], path: str) -> Any:
    """The input at a dotted path, e.g. virtualMachineProfile.osProfile.customData; None where it is missing."""
    for key in path.split("."):
        inputs = inputs.get(key) if isinstance(inputs, dict) else None
    return inputs


def run(stack: str) -> Plan:
    """Plans one stack in this process. Pulumi's runtime is process-global: plan one stack per process."""
    path = stack_file(stack)
    name = stack_name_of(path)
    config, secret_keys = stack_config(path)
    cloud = config.get(f"{PROJECT}:cloud")
    region = config.get(f"{PROJECT}:region")  # the mocks answer as the cloud would in the stack's region

    import pulumi
    from google.protobuf import json_format  # the replacement trigger, a protobuf Value
    from pulumi.runtime import mocks, settings, stack as runtime_stack, sync_await

    import components
    from fleet import catalog

    plan = Plan(stack=name)
    # An unknown cloud is the program's to report, as one config error.
    hooks = components.load(cloud) if cloud in catalog.clouds() else None

    class Monitor(mocks.MockMonitor):
        def RegisterResource(self, request):  # noqa: N802 (Pulumi's name)
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                if any(step.urn == response.urn for step in plan.steps):
                    raise PlanError(f"two resources have the URN {response.urn}")
                inputs = mocks.rpc.deserialize_properties(request.object, keep_unknowns=True)
                options = {"ignoreChanges": list(request.ignoreChanges),
                           "replaceOnChanges": list(request.replaceOnChanges),
                           "deleteBeforeReplace": request.deleteBeforeReplace, "protect": request.protect,
                           "replacementTrigger": json_format.MessageToDict(request.replacement_trigger)
                           if request.HasField("replacement_trigger") else None,
                           "customTimeouts": {phase: getattr(request.customTimeouts, phase)
                                              for phase in ("create", "update", "delete")
                                              if getattr(request.customTimeouts, phase)}}
                plan.steps.append(Step(response.urn, request.type, request.name, bool(request.custom),
                                       request.parent, _show(dict(inputs)),
                                       {k: v for k, v in options.items() if v}))
            return response

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            state = dict(args.inputs)
            if args.typ == "random:index/randomPassword:RandomPassword":  # the program's generated API key
                state["result"] = f"{SECRET_STAND_IN}generated-{args.name}"
            elif hooks:
                state.update(hooks.offline_state(args.typ, args.name, args.inputs, region))
            return state.pop("id", f"{args.name}-id"), state

        def call(self, args: pulumi.runtime.MockCallArgs):
            return hooks.offline_invoke(args.token, args.args, region) if hooks else {}

    class Warnings(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                plan.warnings.append(record.getMessage())

    logger = logging.getLogger(f"vllm-fleet-plan-{name}")
    logger.propagate = False
    logger.addHandler(Warnings())
    monitor = Monitor(Mocks())
    mocks.set_mocks(Mocks(), project=PROJECT, stack=name, preview=False, logger=logger, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys)

    main = str(ROOT / "__main__.py")
    from fleet.errors import ConfigError

    try:
        sync_await._sync_await(runtime_stack.run_pulumi_func(lambda: runpy.run_path(main, run_name="__main__")))
    except ConfigError:
        # `pulumi up` creates resources as the program declares them: a config error must come before the first.
        if plan.steps:
            raise RuntimeError(f"the config error came after {len(plan.steps)} resources were declared "
                               f"({plan.steps[0].type} first): `pulumi up` would have created them") from None
        raise

    root = settings.get_root_resource()
    for key, value in root.outputs.items():
        output = pulumi.Output.from_input(value)
        plan.outputs[key] = sync_await._sync_await(output.future())
        if sync_await._sync_await(output.is_secret()):
            plan.secret_outputs.add(key)
    if hooks:
        type_, input_name, encoding = hooks.USER_DATA
        carriers = [text for s in plan.steps if s.type == type_ and (text := _nested(s.inputs, input_name))]
        if carriers:
            plan.user_data = decode_user_data(carriers[0], encoding)
    return plan


def decode_user_data(text: str, encoding: str) -> str:
    """A VM's cloud-init user-data from the resource input that carries it: `text`, `base64`, or `base64+gzip`."""
    if encoding == "text":
        return text
    data = base64.b64decode(text)
    return (gzip.decompress(data) if encoding == "base64+gzip" else data).decode()


def check_policies(plan: Plan) -> None:
    """Runs the policy pack of policies/ on every planned resource, as `pulumi preview --policy-pack` would."""
    sys.path.insert(0, str(ROOT / "policies"))
    from fleet_policies import POLICIES
    from pulumi_policy import ResourceValidationArgs

    for step in plan.steps:
        args = ResourceValidationArgs(step.type, step.inputs, step.urn, step.name, None, None)
        for policy in POLICIES:
            policy.validate(args, lambda message, urn=None, name=policy.name:
                            plan.policy_violations.append(f"[{name}] {message}"))


def _brief(inputs: dict[str, Any], width: int = 150) -> str:
    parts = []
    for key, value in inputs.items():
        if key in ("tags", "tagsAll", "labels") or value in (None, [], {}):
            continue
        shown = json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value
        if len(shown) > 60:
            shown = shown[:57] + "..."
        parts.append(f"{key}={shown}")
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 3] + "..."


def _wake_line(wake: dict[str, Any], command: str) -> str:
    """What a wake costs and takes: wakeOnRequest's (a keyed request while it sleeps), else `make wake`'s default."""
    how = ("  Wake on request: a request with a valid API key while it sleeps starts" if wake["onRequest"]
           else f"  Wake: `{command}` starts")
    return (f"{how} {wake['vms']} VM(s) for {wake['hours']:g} h: {wake['gpuHours']:g} GPU hours, ${wake['usd']:.2f} "
            f"a wake (less where the next window opens first); it serves ~{math.ceil(wake['secondsToServe'] / 60)} "
            f"min later ({wake['secondsToServe']} s)")


def render_text(plan: Plan) -> str:
    out = [f"Plan for stack {plan.stack} (offline, under Pulumi mocks: nothing is created)", ""]
    out.append(f"Resources: {len(plan.steps)} to create")
    for step in plan.steps:
        out.append(f"  + {step.type}  {step.name}")
        brief = _brief(step.inputs)
        if brief:
            out.append(f"      {brief}")
    out += ["", "Outputs:"]
    for key, value in plan.outputs.items():
        if key in ("estimatedCost", "quota", "curlExample", "continueConfig", "warnings", "timeToServe", "image",
                   "capacity", "officeHours", "autoscaling"):
            continue
        out.append(f"  {key}: {SHOWN_SECRET if key in plan.secret_outputs else json.dumps(value)}")
    cost = plan.outputs.get("estimatedCost")
    if cost and "usdPerMonth24x7" in cost:
        out += ["", f"Cost: ${cost['usdPerHour']}/hour at desired replicas (${cost['usdPerHourAtMaxReplicas']}/hour at "
                    f"max), ${cost['usdPerMonth']:.0f}/month as scheduled against ${cost['usdPerMonth24x7']:.0f}/month "
                    f"around the clock ({cost['savingPercent']}% less); {cost['basis']}"]
    elif cost:
        out += ["", f"Cost: ${cost['usdPerHour']}/hour, ${cost['usdPerMonth']:.0f}/month at desired replicas "
                    f"(${cost['usdPerHourAtMaxReplicas']}/hour at max); {cost['basis']}"]
    hours = plan.outputs.get("officeHours")
    if hours:
        pool = hours["standbyPool"]
        out += [f"Office hours: {', '.join(hours['windows'])} ({hours['timezone']}); scale up {hours['scaleUpMinutesEarly']} "
                f"min early ({'; '.join(hours['scaleUpAt'])}), down to {hours['offHoursReplicas']} at "
                f"{'; '.join(hours['scaleDownAt'])}; {hours['wake']} starts it early",
                _wake_line(hours["wakeCost"], hours["wake"]),
                f"  {pool['kind']}: {pool['stoppedOffHours']} stopped VMs off hours, {pool['stoppedInHours']} in hours, "
                f"${pool['diskUsdPerStoppedVmMonth']}/month of disks each; {pool['note']}" if pool
                else f"  {hours['standbyNote']}"]
    held = plan.outputs.get("capacity")
    if held:
        plural = "" if held["requestsPerReplica"] == 1 else "s"
        out += [f"Capacity: {held['requestsPerReplica']} request{plural} of {held['tokensPerRequest']} tokens at once "
                f"a replica (limited by its {held['limitedBy'].replace('_', ' ')}), {held['requestsAtDesired']} at "
                f"desired and {held['requestsAtMax']} at max replicas"]
    scaling = plan.outputs.get("autoscaling")
    if scaling:
        out += [f"Autoscaling on vLLM's signals: requests waiting + running at {scaling['requestsPerVm']} a VM "
                f"({scaling['requestsPerVmFrom']}), KV cache usage at {scaling['kvCacheUsage']:.0%}; metric period "
                f"{scaling['periodSeconds']} s, a new VM's metrics left out (warm-up) {scaling['warmupSeconds']} s",
                *(f"  {policy}" for policy in scaling["policies"]),
                f"  scale-in: {scaling['scaleIn']}",
                f"  a scale-out adds serving capacity in ~{math.ceil(scaling['timeToCapacitySeconds'] / 60)} min: "
                f"{scaling['timeToCapacityBasis']}"]
    budget = plan.outputs.get("timeToServe")
    if budget:
        out += ["", f"Time to serve: a new VM takes {budget['basis']}",
                f"  Readiness by progress: a VM is replaced once its setup makes no progress for "
                f"{budget['stallSeconds']} s, vLLM does not serve within {budget['vllmStartSeconds']} s of the setup's "
                f"end or stops answering for that long; one that leaves drains its generations for up to "
                f"{budget['drainSeconds']} s"]
    if plan.outputs.get("image"):
        out += [f"Image: {plan.outputs['image']}"]
    quotas = plan.outputs.get("quota") or []
    if quotas:
        out += ["", "Quota needed (ask for it before `pulumi up`):"]
        for q in quotas:
            code = f" [{q['code']}]" if q.get("code") else ""
            pool = (f", {q['withPoolSetup']} while the pool's stopped VMs set up"
                    if q["withPoolSetup"] > q["atDesired"] else "")
            out.append(f"  {q['name']}{code} ({q['scope']}): {q['atDesired']} {q['unit']} at desired, "
                       f"{q['atMax']} at max replicas, {q['duringUpdate']} while a rolling update replaces them"
                       f"{pool}")
    for key in ("curlExample", "continueConfig"):
        if plan.outputs.get(key):
            out += ["", f"{key}:", *("  " + line for line in plan.outputs[key].splitlines())]
    warnings = plan.warnings + [w for w in plan.outputs.get("warnings", []) if w not in plan.warnings]
    if warnings:
        out += ["", "Warnings:", *(f"  ! {w}" for w in warnings)]
    out += ["", "Policies (policies/fleet_policies.py): "
                + ("all passed" if not plan.policy_violations else f"{len(plan.policy_violations)} violations")]
    out += [f"  x {v}" for v in plan.policy_violations]
    if plan.user_data:
        out += ["", "User data of each VM (cloud-init):", *("  " + line for line in plan.user_data.splitlines())]
    return "\n".join(out)


# Exit statuses, for CI: what went wrong without reading the output.
EXIT_PLANNED, EXIT_CONFIG_ERROR, EXIT_POLICY_VIOLATION, EXIT_INTERNAL_ERROR = 0, 2, 3, 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make plan", description=__doc__.split("\n\n")[0],
                                     epilog="exit status: 0 planned, 2 config error (nothing planned), 3 policy "
                                            "violation, 4 internal error (a bug of vllm-fleet)")
    parser.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml) or path to a stack file")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)

    from fleet.errors import ConfigError

    try:
        plan = run(args.stack)
    except (ConfigError, PlanError) as error:
        print(f"error: {error}", file=sys.stderr)
        print("Nothing was planned or created.", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except Exception:  # noqa: BLE001 - not the user's input: a bug, shown in full to be reported
        traceback.print_exc()
        print("internal error: this is a bug of vllm-fleet, not of the stack's config; nothing was created",
              file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    check_policies(plan)
    if args.format == "json":
        print(json.dumps(plan.preview_json(), indent=2, default=str))
    else:
        print(render_text(plan))
    return EXIT_POLICY_VIOLATION if plan.policy_violations else EXIT_PLANNED


if __name__ == "__main__":
    sys.exit(main())
