"""After `pulumi up`: wait for the roll of the VMs, `make check` against the stack's endpoint until every check
passes, then prove that every revoked API key is refused.

    python .github/scripts/post_deploy_check.py --stack codellama-prod

`pulumi up` returns before the VMs are replaced (AWS: `wait_for_capacity_timeout=0`; GCP and Azure roll after the
update). Until the roll is done old VMs, which accept the keys of before, may still serve; and a roll that fails
goes back to them (AWS's auto rollback to the previous launch template). So first each cloud's own view of the roll,
by its CLI: the AWS instance refresh's status, the GCP managed instance group's `status.isStable` and
`versionTarget.isReached`, the Azure scale set's latest rolling upgrade and `latestModelApplied` of its VMs; for at
most the stack's timeToServe for each desired replica (VMs that roll one after the other). A failed or rolled-back
roll fails the check. Then `make check` until it passes (at most timeToServe), then each key the VMs accepted
before the deploy (deploy.py recorded them from the state) that is no longer one of the stack's keys, removed or
given a new value, must get 401 on /v1/models.

With office hours (`officeHours`, offHoursReplicas 0), outside the hours and their scale-up lead no VM is coming:
then it checks the closed answer instead (what the load balancer answers while no VM serves: AWS and GCP a 503
with the JSON of fleet/schedule.py closed_answer, Azure its 502 page with the same message), until it is given or
timeToServe runs out.

It checks with the stack's named API key `ci` (apiKeys.ci) where there is one, else with the apiKey output (the
default key, else the first named one): docs/ci.md.

Reads the stack's outputs once (`endpoint`, `servedModelName`, `apiKey`, `apiKeyNames`, `timeToServe`) and masks
every key in the log before anything else is printed; `make check` gets the key in its environment
(OPENAI_API_KEY), never on a command line. Sets the step output `endpoint`. Exits 0 when all of it passes, 1 when
something still fails at its deadline, 2 when the stack has no endpoint to check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ci_common import ROOT, mask, set_output, stack_config, stack_file

sys.path.insert(0, str(ROOT))  # the program's office hours (fleet/schedule.py): what the stack answers when closed
from fleet.schedule import OfficeHours, closed_answer, parse_office_hours  # noqa: E402

DEFAULT_TIME_TO_SERVE_SECONDS = 3600  # when the stack has no timeToServe output
RETRY_INTERVAL_SECONDS = 60
# The resource holding the JSON of every API key (fleet/program.py's apiKeys secret) per cloud, and where its
# value is among the resource's inputs in an exported state.
API_KEYS_SECRETS = {
    "aws:secretsmanager/secretVersion:SecretVersion": "secretString",
    "gcp:secretmanager/secretVersion:SecretVersion": "secretData",
    "azure-native:keyvault:Secret": "properties.value",
}
# The VMs' group per cloud in an exported state: AWS Auto Scaling group, GCP regional MIG, Azure scale set.
GROUPS = {
    "aws": "aws:autoscaling/group:Group",
    "gcp": "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager",
    "azure": "azure-native:compute:VirtualMachineScaleSet",
}
# AWS InstanceRefreshStatus (botocore's autoscaling model). A rollback went back to the old launch template, with
# the keys of before: a failure like Failed.
AWS_REFRESH = {"Pending": "rolling", "InProgress": "rolling", "Baking": "rolling", "Cancelling": "rolling",
               "RollbackInProgress": "rolling", "Successful": "done", "Failed": "failed", "Cancelled": "failed",
               "RollbackFailed": "failed", "RollbackSuccessful": "failed"}
# Azure RollingUpgradeStatusCode (azure-mgmt-compute).
AZURE_UPGRADE = {"RollingForward": "rolling", "Completed": "done", "Cancelled": "failed", "Faulted": "failed"}


# The named API key meant for this check (apiKeys.ci, docs/ci.md); without one, the stack's client key (its apiKey
# output: the default key, else the first named one).
CI_KEY_NAME = "ci"
# What a closed fleet (office hours, no VM serving) answers on /v1/models, per cloud (docs/office-hours.md): AWS's
# listener rule and GCP's URL map answer 503 with the JSON of fleet.schedule.closed_answer; Azure's gateway answers
# its 502 with an HTML page that holds the same message.
CLOSED_STATUS = {"aws": 503, "gcp": 503, "azure": 502}


@dataclass(frozen=True)
class Target:
    url: str
    model: str
    api_key: str
    time_to_serve: int
    replicas: int = 1  # desired
    key_name: str = ""  # the named key api_key is, or "" for the apiKey output


def target_of(outputs: Mapping[str, Any], keys: Mapping[str, str] | None = None) -> Target:
    """The endpoint to check, with the `ci` key of `keys` (the stack's API keys by name) where it has one."""
    missing = [name for name in ("endpoint", "servedModelName", "apiKey") if not outputs.get(name)]
    if missing:
        raise LookupError(f"the stack has no output {', '.join(missing)}: did `pulumi up` finish?")
    seconds = (outputs.get("timeToServe") or {}).get("seconds")
    ci_key = (keys or {}).get(CI_KEY_NAME)
    return Target(outputs["endpoint"], outputs["servedModelName"], ci_key or outputs["apiKey"],
                  int(seconds) if seconds else DEFAULT_TIME_TO_SERVE_SECONDS,
                  max(1, int((outputs.get("replicas") or {}).get("desired") or 1)), CI_KEY_NAME if ci_key else "")


# --- office hours ---------------------------------------------------------------------------------------------------
def office_hours(stack: str) -> OfficeHours | None:
    """The stack's office hours, from its stack file (the commit just deployed); None without."""
    value = stack_config(stack_file(ROOT, stack)).get("officeHours")
    # `pulumi up` has validated the key: no bound on offHoursReplicas here.
    return parse_office_hours(value, replicas_min=10**6) if value is not None else None


def closed_now(hours: OfficeHours | None, outputs: Mapping[str, Any], now: dt.datetime) -> bool:
    """Whether no VM serves at `now` by the schedule: outside the windows and their scale-up lead, with
    offHoursReplicas 0."""
    if hours is None or hours.off_hours_replicas:
        return False
    lead = int((outputs.get("officeHours") or {}).get("scaleUpMinutesEarly") or 0)
    return not hours.scaled_up_at(now, lead)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def fetch(url: str, key: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        return 0, str(error)


def closed_answer_check(stack: str, cloud: str, hours: OfficeHours,
                        answer: Callable[[str, str], tuple[int, str]] = fetch) -> Callable[[Target], int]:
    """One look at /v1/models of a closed fleet: 0 when it gives the closed answer, 1 otherwise (the log says what
    it gave)."""
    expected = closed_answer(stack, hours)

    def check(target: Target) -> int:
        status, body = answer(f"{target.url}/v1/models", target.api_key)
        if status == CLOSED_STATUS[cloud]:
            if cloud == "azure" and html.escape(expected["error"]["message"]) in body:
                return 0
            if cloud != "azure" and _json(body) == expected:
                return 0
        print(f"FAIL the closed answer: /v1/models answered {status} {body.strip()[:300]!r}; expected "
              f"{CLOSED_STATUS[cloud]} with: {expected['error']['message']}")
        return 1
    return check


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# --- the state: the keys, the group ----------------------------------------------------------------------------
def nested(values: Any, path: str) -> Any:
    for key in path.split("."):
        values = values.get(key) if isinstance(values, dict) else None
    return values


def plaintext(values: Mapping[str, Any], path: str) -> str | None:
    """A value of an exported state's inputs; with --show-secrets a secret is {<sig>: ..., "plaintext": <JSON>}."""
    value = nested(values, path)
    if isinstance(value, dict) and "plaintext" in value:
        value = json.loads(value["plaintext"])
    return value if isinstance(value, str) else None


def api_keys_in_state(state: Mapping[str, Any]) -> dict[str, str]:
    """The API keys the VMs accept, by name: the stack's apiKeys secret in an exported state (`pulumi stack export
    --show-secrets`); {} for a stack not deployed yet."""
    for resource in (state.get("deployment") or {}).get("resources") or []:
        path = API_KEYS_SECRETS.get(resource.get("type", ""))
        if path and resource["urn"].endswith("-apiKeys"):
            value = plaintext(resource.get("inputs") or {}, path)
            return json.loads(value) if value else {}
    return {}


def group_in_state(state: Mapping[str, Any], cloud: str, region: str) -> dict[str, str]:
    """What each cloud's CLI needs to find the stack's VM group."""
    resource = next(r for r in (state.get("deployment") or {}).get("resources") or []
                    if r.get("type") == GROUPS[cloud])
    outputs, inputs = resource.get("outputs") or {}, resource.get("inputs") or {}
    if cloud == "aws":
        return {"name": outputs["name"], "region": region}
    if cloud == "gcp":
        return {"name": outputs["name"], "region": outputs.get("region") or region, "project": outputs["project"]}
    return {"name": outputs["name"], "resourceGroup": inputs["resourceGroupName"]}


def export(stack: str, show_secrets: bool = False) -> dict[str, Any]:
    command = ["pulumi", "stack", "export", "--stack", stack, *(["--show-secrets"] if show_secrets else [])]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise LookupError(f"pulumi stack export failed: {result.stderr.strip()[-400:]}")
    return json.loads(result.stdout)


def record_file(stack: str) -> Path:
    """What deploy.py records before `pulumi up` for this step (the runner's temporary folder, gone with the job)."""
    return Path(os.environ.get("RUNNER_TEMP", "/tmp")) / f"vllm-fleet-deploy-{stack}.json"


# --- the roll ---------------------------------------------------------------------------------------------------
Run = Callable[[list[str]], subprocess.CompletedProcess]


def run_cli(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def roll_state(cloud: str, group: Mapping[str, str], since: dt.datetime, run: Run = run_cli) -> tuple[str, str]:
    """("done" | "rolling" | "failed", what the cloud says) of the roll that the deploy at `since` started. A CLI
    that fails is asked again (until the deadline, which names its error)."""
    try:
        return _roll_state(cloud, group, since, run)
    except CliError as error:
        return "rolling", str(error)


class CliError(Exception):
    pass


def _answer(run: Run, command: list[str]) -> Any:
    result = run(command)
    if result.returncode != 0:
        raise CliError(f"{' '.join(command[:4])} failed: {result.stderr.strip()[-300:]}")
    return json.loads(result.stdout)


def _roll_state(cloud: str, group: Mapping[str, str], since: dt.datetime, run: Run) -> tuple[str, str]:
    if cloud == "aws":
        answer = _answer(run, ["aws", "autoscaling", "describe-instance-refreshes", "--region", group["region"],
                               "--auto-scaling-group-name", group["name"], "--output", "json"])
        refreshes = [r for r in answer["InstanceRefreshes"] if _time(r["StartTime"]) >= since]
        if not refreshes:
            return "done", "no instance refresh since the deploy: the VMs did not change"
        refresh = max(refreshes, key=lambda r: _time(r["StartTime"]))
        return AWS_REFRESH[refresh["Status"]], (f"instance refresh {refresh['Status']} "
                                                f"{refresh.get('PercentageComplete', 0)}% {refresh.get('StatusReason', '')}").strip()
    if cloud == "gcp":
        answer = _answer(run, ["gcloud", "compute", "instance-groups", "managed", "describe", group["name"],
                               "--region", group["region"], "--project", group["project"], "--format", "json"])
        status = answer.get("status") or {}
        reached = (status.get("versionTarget") or {}).get("isReached")
        stable = status.get("isStable")
        return ("done" if stable and reached else "rolling"), f"isStable {stable}, versionTarget.isReached {reached}"
    latest = run(["az", "vmss", "rolling-upgrade", "get-latest", "--resource-group", group["resourceGroup"],
                  "--name", group["name"], "--output", "json"])
    running = (json.loads(latest.stdout).get("runningStatus") or {}) if latest.returncode == 0 else {}
    if running.get("startTime") and _time(running["startTime"]) >= since and AZURE_UPGRADE[running["code"]] != "done":
        return AZURE_UPGRADE[running["code"]], f"rolling upgrade {running['code']}"
    # No upgrade since the deploy yet, or a completed one: every VM must run the scale set's latest model.
    instances = _answer(run, ["az", "vmss", "list-instances", "--resource-group", group["resourceGroup"], "--name",
                              group["name"], "--output", "json"])
    behind = [vm.get("name") for vm in instances if not vm.get("latestModelApplied")]
    return ("rolling" if behind else "done"), (f"{len(behind)} VMs not on the latest model" if behind
                                               else "every VM on the latest model")


def wait_for_roll(cloud: str, group: Mapping[str, str], since: dt.datetime, seconds: int, run: Run = run_cli,
                  clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                  interval: int = RETRY_INTERVAL_SECONDS) -> int:
    deadline = clock() + seconds
    while True:
        state, said = roll_state(cloud, group, since, run)
        print(f"roll of {group['name']}: {said}", flush=True)
        if state == "done":
            return 0
        if state == "failed":
            print(f"::error::the roll of {group['name']} failed ({said}): VMs of before, which accept the keys of "
                  f"before, may still serve")
            return 1
        if clock() + interval > deadline:
            print(f"::error::the roll of {group['name']} is not done after {seconds} s ({said})")
            return 1
        sleep(interval)


# --- the keys ---------------------------------------------------------------------------------------------------
def revoked(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    """The keys of before that the stack no longer has (removed, or its name given a new value), by name."""
    kept = set(after.values())
    return {name: value for name, value in before.items() if value not in kept}


def status_of(url: str, key: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def revoked_keys_refused(target: Target, keys: Mapping[str, str],
                         status: Callable[[str, str], int] = status_of) -> int:
    """Each revoked key must get 401 on /v1/models; named by its name only."""
    accepted = [name for name, key in sorted(keys.items()) if status(f"{target.url}/v1/models", key) != 401]
    for name in accepted:
        print(f"::error::the revoked API key {name!r} is still accepted by {target.url}")
    if keys and not accepted:
        print(f"every revoked key is refused (401): {', '.join(sorted(keys))}")
    return 1 if accepted else 0


# --- make check ---------------------------------------------------------------------------------------------------
def stack_outputs(stack: str) -> dict[str, Any]:
    result = subprocess.run(["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise LookupError(f"pulumi stack output failed: {result.stderr.strip()[-400:]}")
    return json.loads(result.stdout)


def make_check(target: Target) -> int:
    """One run of `make check` against the endpoint; its PASS/FAIL lines go to the log."""
    environment = {**os.environ, "OPENAI_API_KEY": target.api_key}
    return subprocess.run(["make", "check", f"URL={target.url}", f"MODEL={target.model}"], cwd=ROOT,
                          env=environment).returncode


def check_until_served(target: Target, check: Callable[[Target], int] = make_check,
                       clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                       interval: int = RETRY_INTERVAL_SECONDS, what: str = "make check") -> int:
    deadline = clock() + target.time_to_serve
    attempt = 0
    while True:
        attempt += 1
        print(f"::group::{what}, attempt {attempt}", flush=True)
        status = check(target)
        print("::endgroup::", flush=True)
        if status == 0:
            print(f"{what}: every check passed (attempt {attempt})")
            return 0
        if clock() + interval > deadline:
            print(f"::error::{what}: checks still fail after {target.time_to_serve} s, the stack's expected time "
                  f"for a new VM to serve (timeToServe): see the last attempt's FAIL lines")
            return 1
        print(f"not yet: retrying in {interval} s (VMs may still be starting or stopping)", flush=True)
        sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--cloud", required=True, choices=tuple(GROUPS))
    parser.add_argument("--region", required=True)
    parser.add_argument("--interval", type=int, default=RETRY_INTERVAL_SECONDS)
    args = parser.parse_args(argv)
    try:
        record = json.loads(record_file(args.stack).read_text())
        before = record["apiKeys"]
        after = api_keys_in_state(export(args.stack, show_secrets=True))
        outputs = stack_outputs(args.stack)
        for key in [*before.values(), *after.values(), str(outputs.get("apiKey") or "")]:
            if key:
                mask(key)
        target = target_of(outputs, after)
        group = group_in_state(export(args.stack), args.cloud, args.region)
        hours = office_hours(args.stack)
    except (LookupError, OSError, StopIteration) as error:
        print(f"::error::{error!r}")
        return 2
    set_output("endpoint", target.url)  # the environment's URL on GitHub
    print(f"checking with the API key {target.key_name!r}" if target.key_name else
          f"checking with the stack's apiKey output (no named {CI_KEY_NAME!r} key in apiKeys)")
    if closed_now(hours, outputs, utc_now()):
        print(f"{args.stack} is closed now ({hours.describe()}, offHoursReplicas 0): checking for the closed "
              f"answer instead of waiting for VMs that are not coming; the roll and the revoked keys are not "
              f"checked (no VM runs to roll or to answer a key)", flush=True)
        return check_until_served(target, closed_answer_check(args.stack, args.cloud, hours),
                                  interval=args.interval, what="the closed answer")
    since = _time(record["startedAt"])
    if wait_for_roll(args.cloud, group, since, target.time_to_serve * target.replicas, interval=args.interval):
        return 1
    print(f"checking {target.url} ({target.model}) for up to {target.time_to_serve} s", flush=True)
    if check_until_served(target, interval=args.interval):
        return 1
    return revoked_keys_refused(target, revoked(before, after))


if __name__ == "__main__":
    sys.exit(main())
