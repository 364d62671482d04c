"""What GCP would answer the offline plan (fleet/plan.py): its data sources and the computed outputs of its
resources, under Pulumi's mocks."""

from __future__ import annotations

from typing import Any, Mapping

OFFLINE_PROJECT = "offline-plan-project"
OFFLINE_PROJECT_NUMBER = "123456789012"


def offline_invoke(token: str, args: Mapping[str, Any]) -> dict[str, Any]:
    if token == "gcp:compute/getImage:getImage":
        name = f"{args['family']}-v20261101"
        return {"name": name, "family": args["family"], "project": args["project"],
                "selfLink": f"https://www.googleapis.com/compute/v1/projects/{args['project']}/global/images/{name}"}
    raise NotImplementedError(f"the offline plan has no answer for {token}")


def offline_state(type_: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    kind = type_.split(":")[-1]
    scope = f"regions/{inputs['region']}" if "region" in inputs else "global"
    self_link = f"https://www.googleapis.com/compute/v1/projects/{OFFLINE_PROJECT}/{scope}/{kind[0].lower()}{kind[1:]}s/{name}"
    state: dict[str, Any] = {"name": inputs.get("name", name), "selfLink": self_link}
    if type_ == "gcp:compute/instanceTemplate:InstanceTemplate":
        state["selfLinkUnique"] = f"{self_link}?uniqueId=1234567890123456789"
    if type_ == "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager":
        state["instanceGroup"] = self_link.replace("/regionInstanceGroupManagers/", "/instanceGroups/")
    if type_ == "gcp:compute/globalAddress:GlobalAddress":
        state["address"] = "192.0.2.10"
    if type_ == "gcp:serviceaccount/account:Account":
        state["email"] = f"{inputs['accountId']}@{OFFLINE_PROJECT}.iam.gserviceaccount.com"
    if type_ == "gcp:secretmanager/secret:Secret":
        state["name"] = f"projects/{OFFLINE_PROJECT_NUMBER}/secrets/{inputs['secretId']}"
    return state
