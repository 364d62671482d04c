"""What GCP would answer the offline plan (cli/plan.py): its data sources and the computed outputs of its
resources, under Pulumi's mocks, as in the stack's region. A resource's "id" here is its id; others get
"<name>-id"."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

OFFLINE_PROJECT = "offline-plan-project"
OFFLINE_PROJECT_NUMBER = "123456789012"


def _number(*parts: Any) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:12], 16)


def offline_invoke(token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
    if token == "gcp:compute/getImage:getImage":
        name = args["name"]
        return {"name": name, "project": args["project"],
                "selfLink": f"https://www.googleapis.com/compute/v1/projects/{args['project']}/global/images/{name}"}
    raise NotImplementedError(f"the offline plan has no answer for {token}")


def offline_state(type_: str, name: str, inputs: Mapping[str, Any], region: str) -> dict[str, Any]:
    kind = type_.split(":")[-1]
    scope = f"regions/{inputs['region']}" if "region" in inputs else "global"
    self_link = f"https://www.googleapis.com/compute/v1/projects/{OFFLINE_PROJECT}/{scope}/{kind[0].lower()}{kind[1:]}s/{name}"
    state: dict[str, Any] = {"name": inputs.get("name", name), "selfLink": self_link}
    if type_ == "gcp:compute/instanceTemplate:InstanceTemplate":
        # A template is immutable: another one (other inputs) has another unique id.
        state["selfLinkUnique"] = f"{self_link}?uniqueId={_number(name, inputs) % 10**19}"
    if type_ == "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager":
        state["instanceGroup"] = self_link.replace("/regionInstanceGroupManagers/", "/instanceGroups/")
    if type_ == "gcp:compute/globalAddress:GlobalAddress":
        state["address"] = "192.0.2.10"
    if type_ == "gcp:serviceaccount/account:Account":
        state["email"] = f"{inputs['accountId']}@{OFFLINE_PROJECT}.iam.gserviceaccount.com"
    if type_ == "gcp:secretmanager/secret:Secret":
        state["name"] = f"projects/{OFFLINE_PROJECT_NUMBER}/secrets/{inputs['secretId']}"
        state["id"] = f"projects/{OFFLINE_PROJECT}/secrets/{inputs['secretId']}"
    if type_ == "gcp:secretmanager/secretVersion:SecretVersion":
        # Secret Manager numbers a secret's versions; a new value is a new version.
        secret = inputs["secret"].replace(f"projects/{OFFLINE_PROJECT}/", f"projects/{OFFLINE_PROJECT_NUMBER}/")
        state["name"] = f"{secret}/versions/{1 + _number(inputs.get('secretData')) % 1000}"
    return state
