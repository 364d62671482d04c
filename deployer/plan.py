"""Offline plan of the deployer: runs deployer/__main__.py under Pulumi's mocks with a deployer stack file's config
and prints what `pulumi preview` in deployer/ would create, like the fleet's `make plan`.

    python -m deployer.plan example                 # deployer/Pulumi.example.yaml, or a path to a stack file
    python -m deployer.plan example --format json   # the shape of `pulumi preview --json`, plus outputs

Exit status: 0 planned, 2 config error (one line on stderr), 4 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml

from .config import NAMESPACE, DeployerConfigError

DEPLOYER = Path(__file__).resolve().parent
OFFLINE_ACCOUNT = "123456789012"
OFFLINE_PROJECT_NUMBER = "123456789012"
OFFLINE_TENANT = "11111111-1111-1111-1111-111111111111"
OFFLINE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
OFFLINE_REPOSITORY_ID = 123456789
EXIT_PLANNED, EXIT_CONFIG, EXIT_INTERNAL = 0, 2, 4


def stack_file(stack: str) -> Path:
    path = Path(stack)
    if path.suffix in (".yaml", ".yml"):
        return path
    return DEPLOYER / f"Pulumi.{stack}.yaml"


def stack_config(path: Path) -> dict[str, str]:
    """The config as the Pulumi CLI passes it to the program: strings, JSON for structured values."""
    config = {}
    for key, value in ((yaml.safe_load(path.read_text()) or {}).get("config") or {}).items():
        key = key if ":" in key else f"{NAMESPACE}:{key}"
        config[key] = value if isinstance(value, str) else json.dumps(value)
    return config


def offline_state(type_: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The id and computed outputs a cloud would give a created resource."""
    state = dict(inputs)
    resource_id = f"{name}-id"
    if type_ == "aws:iam/role:Role":
        state["arn"] = f"arn:aws:iam::{OFFLINE_ACCOUNT}:role/{inputs['name']}"
        resource_id = inputs["name"]
    elif type_ == "aws:iam/policy:Policy":
        state["arn"] = f"arn:aws:iam::{OFFLINE_ACCOUNT}:policy{inputs['path']}{inputs['name']}"
    elif type_ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        state["arn"] = f"arn:aws:iam::{OFFLINE_ACCOUNT}:oidc-provider/{inputs['url'].removeprefix('https://')}"
    elif type_ == "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
        state["name"] = (f"projects/{OFFLINE_PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
                         f"{inputs['workloadIdentityPoolId']}")
    elif type_ == "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider":
        state["name"] = (f"projects/{OFFLINE_PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
                         f"{inputs['workloadIdentityPoolId']}/providers/{inputs['workloadIdentityPoolProviderId']}")
    elif type_ == "gcp:serviceaccount/account:Account":
        state["email"] = f"{inputs['accountId']}@offline-plan-project.iam.gserviceaccount.com"
        state["name"] = f"projects/offline-plan-project/serviceAccounts/{state['email']}"
    elif type_ == "gcp:projects/iAMCustomRole:IAMCustomRole":
        state["name"] = f"projects/{inputs['project']}/roles/{inputs['roleId']}"
    elif type_ == "azuread:index/application:Application":
        state.update(clientId=f"{name}-client-id", objectId=f"{name}-object-id")
        resource_id = f"/applications/{name}-object-id"
    elif type_ == "azuread:index/servicePrincipal:ServicePrincipal":
        state["objectId"] = f"{name}-principal-id"
    elif type_ == "azure-native:authorization:RoleDefinition":
        resource_id = f"{inputs['scope']}/providers/Microsoft.Authorization/roleDefinitions/{name}"
    elif type_ == "azure-native:resources:ResourceGroup":
        resource_id = f"/subscriptions/{OFFLINE_SUBSCRIPTION}/resourceGroups/{inputs['resourceGroupName']}"
    return resource_id, state


def offline_invoke(token: str, args: dict[str, Any]) -> dict[str, Any]:
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {"accountId": OFFLINE_ACCOUNT, "arn": f"arn:aws:iam::{OFFLINE_ACCOUNT}:user/offline",
                "userId": "OFFLINE", "id": OFFLINE_ACCOUNT}
    if token == "azure-native:authorization:getClientConfig":
        return {"subscriptionId": OFFLINE_SUBSCRIPTION, "tenantId": OFFLINE_TENANT,
                "clientId": "22222222-2222-2222-2222-222222222222", "objectId": "33333333-3333-3333-3333-333333333333"}
    if token == "github:index/getRepository:getRepository":
        return {"fullName": args["fullName"], "repoId": OFFLINE_REPOSITORY_ID, "id": args["fullName"].split("/")[1]}
    if token == "gcp:organizations/getProject:getProject":
        return {"projectId": args["projectId"], "number": OFFLINE_PROJECT_NUMBER, "id": args["projectId"]}
    raise NotImplementedError(f"the deployer's offline plan has no answer for {token}")


def run(stack: str) -> dict[str, Any]:
    """Plans one deployer stack in this process (Pulumi's runtime is process-global: one plan per process)."""
    path = stack_file(stack)
    if not path.exists():
        raise DeployerConfigError(f"no deployer stack file {path}")
    import pulumi
    from pulumi.runtime import mocks, settings, stack as runtime_stack, sync_await

    steps: list[dict[str, Any]] = []

    class Monitor(mocks.MockMonitor):
        def RegisterResource(self, request):  # noqa: N802 (Pulumi's name)
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                inputs = mocks.rpc.deserialize_properties(request.object, keep_unknowns=True)
                steps.append({"op": "create", "urn": response.urn, "type": request.type,
                              "newState": {"type": request.type, "urn": response.urn, "custom": request.custom,
                                           "inputs": json.loads(json.dumps(dict(inputs), default=str)),
                                           "dependencies": sorted(request.dependencies)}})
            return response

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            return offline_state(args.typ, args.name, dict(args.inputs))

        def call(self, args: pulumi.runtime.MockCallArgs):
            return offline_invoke(args.token, dict(args.args))

    name = path.name[len("Pulumi."):-len(".yaml")] if path.name.startswith("Pulumi.") else path.stem
    mocks.set_mocks(Mocks(), project=NAMESPACE, stack=name, preview=False, monitor=Monitor(Mocks()))
    pulumi.runtime.set_all_config(stack_config(path))
    main = str(DEPLOYER / "__main__.py")
    sync_await._sync_await(runtime_stack.run_pulumi_func(lambda: runpy.run_path(main, run_name="__main__")))
    outputs = {key: sync_await._sync_await(pulumi.Output.from_input(value).future())
               for key, value in settings.get_root_resource().outputs.items()}
    return {"steps": steps, "outputs": outputs, "diagnostics": [], "changeSummary": {"create": len(steps)}}


def render_text(preview: dict[str, Any]) -> str:
    lines = [f"Resources: {len(preview['steps'])} to create"]
    lines += [f"  + {step['type']}  {step['urn'].rsplit('::', 1)[1]}" for step in preview["steps"]]
    lines += ["", "GitHub Actions variables (the deployer sets them):"]
    for environment, variables in sorted(preview["outputs"]["githubVariables"].items()):
        lines += [f"  {environment}:", *(f"    {name} = {value}" for name, value in sorted(variables.items()))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployer.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="a deployer stack name (deployer/Pulumi.<stack>.yaml) or a stack file")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        preview = run(args.stack)
    except DeployerConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception:  # noqa: BLE001 (anything else is a bug of the deployer: say so, with the traceback)
        traceback.print_exc()
        return EXIT_INTERNAL
    print(json.dumps(preview, indent=2, default=str) if args.format == "json" else render_text(preview))
    return EXIT_PLANNED


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Pulumi's mocks leave an event loop per worker thread; collected during interpreter shutdown, one now and then
    # prints a spurious "Exception ignored" traceback. Everything is written: leave without that teardown.
    os._exit(status)
