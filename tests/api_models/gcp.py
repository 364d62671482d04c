"""GCP: the discovery documents that google-api-python-client ships (googleapiclient/discovery_cache/documents/), the
data Google's client libraries are generated from. A root is a method, its resource path and name joined by "/"
("compute:regionInstanceGroupManagers/insert", "secretmanager:projects/secrets/create"): the request body's schema;
with "?" appended ("compute:subnetworks/insert?"), its URL's parameters (project, region, a query's secretId)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from .core import Field, Model, Pairs, ProviderOnly, Resource, Sent

# The google-beta provider (which pulumi-gcp bridges) calls compute beta; the others at the versions it uses.
# Monitoring's dashboards are its v1 API ("dashboards"), its alerting its v3; a project's IAM policy is Resource
# Manager v1's (the provider's project IAM updater).
DOCUMENTS = {"compute": "compute.beta", "secretmanager": "secretmanager.v1", "iam": "iam.v1", "storage": "storage.v1",
             "dns": "dns.v1", "monitoring": "monitoring.v3", "dashboards": "monitoring.v1",
             "cloudresourcemanager": "cloudresourcemanager.v1"}
INTEGER_RANGES = {"int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1),
                  "uint64": (0, 2**64 - 1)}
# What a description says of a name that its schema leaves out: compute's names ("must be 1-63 characters long and
# match the regular expression `[a-z]([-a-z0-9]*[a-z0-9])?`"), IAM's account ids ("must be 6-30 characters long").
DESCRIBED_PATTERN = re.compile(r"regular\s+expression\s+`([^`]+)`")
DESCRIBED_LENGTH = re.compile(r"(?:must be|is)\s+(\d+)\s*-\s*(\d+)\s+characters\s+long")
DESCRIBED_MAX_LENGTH = re.compile(r"maximum length of (\d+) characters")  # Secret Manager's secret ids: 255
# A name that must "comply with RFC1035" and gives no expression (a named port's): RFC 1035's labels as compute
# spells them elsewhere.
RFC1035 = "[a-z]([-a-z0-9]*[a-z0-9])?"
# Ranges of numbers a description states: "must be between 0 and 3600 seconds" (autohealing's initial delay), "an
# integer between `0` and `65535`", "goes from 1 through 2,147,483,647", "in the range [0, 100]"; and minimums:
# "The minimum allowed value is 300" (a scaling schedule's duration), "must be at least 10 GB".
DESCRIBED_RANGE = re.compile(r"(?:between|from)\s+`?(\d[\d,]*)`?\s+(?:and|through|to)\s+`?(\d[\d,]*)`?"
                             r"|in the range \[(\d+),\s*(\d+)\]")
DESCRIBED_MINIMUM = re.compile(r"(?:minimum allowed value is|must be at least)\s+(\d[\d,]*)")
READ_ONLY = ("[Output Only]", "Output only.")


@cache
def _document(api: str) -> dict[str, Any]:
    import googleapiclient

    folder = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
    return json.loads((folder / f"{DOCUMENTS[api]}.json").read_text())


def _method(api: str, root: str) -> dict[str, Any]:
    *resources, name = root.split("/")
    node: dict[str, Any] = _document(api)
    for resource in resources:
        node = node["resources"][resource]
    return node["methods"][name]


def _described_range(description: str, low: float, high: float) -> tuple[float, float]:
    """The bounds a number's description states, within its format's."""
    def number(text: str) -> float:
        return float(text.replace(",", ""))

    if found := DESCRIBED_RANGE.search(description):
        first, last = (found[1], found[2]) if found[1] else (found[3], found[4])
        return max(low, number(first)), min(high, number(last))
    if found := DESCRIBED_MINIMUM.search(description):
        return max(low, number(found[1])), high
    return low, high


class GcpModel(Model):
    def root(self, api: str, root: str) -> Field:
        assert api in DOCUMENTS, f"no discovery document loaded for {api}"
        document = _document(api)
        if root.endswith("?"):
            parameters = _method(api, root[:-1])["parameters"]
            where = f"{api} {root[:-1]} parameters"
            return Field(where, "structure", members=lambda: {
                name: self._schema(document, spec, f"{where}.{name}", "") for name, spec in parameters.items()})
        method = _method(api, root)
        return self._schema(document, method["request"], f"{api} {root}", method["id"])

    def _schema(self, document: dict[str, Any], schema: dict[str, Any], where: str, method: str) -> Field:
        """A schema as the Field of a request to `method` (whose id the compute and storage documents name in a
        member's annotations.required)."""
        description = schema.get("description", "")
        readonly = bool(schema.get("readOnly")) or description.lstrip().startswith(READ_ONLY)
        if "$ref" in schema:
            resolved = document["schemas"][schema["$ref"]]
            return self._schema(document, {**resolved, **({"readOnly": True} if readonly else {})}, where, method)
        kind = schema.get("type", "any")
        if kind == "object" and "properties" in schema:
            properties = schema["properties"]
            required = frozenset(name for name, spec in properties.items()
                                 if method in spec.get("annotations", {}).get("required", ())
                                 or spec.get("description", "").startswith("Required."))
            return Field(where, "structure", readonly=readonly, required=required, members=lambda: {
                name: self._schema(document, spec, f"{where}.{name}", method) for name, spec in properties.items()})
        if kind == "object" and "additionalProperties" in schema:
            value = schema["additionalProperties"]
            return Field(where, "map", readonly=readonly,
                         item=lambda: self._schema(document, value, f"{where}{{}}", method))
        if kind == "object":
            return Field(where, "any", readonly=readonly)
        if kind == "array":
            item = schema["items"]
            return Field(where, "list", readonly=readonly,
                         item=lambda: self._schema(document, item, f"{where}[]", method))
        if kind == "integer":
            low, high = _described_range(description, *INTEGER_RANGES[schema.get("format", "int32")])
            return Field(where, "integer", readonly=readonly, minimum=float(schema.get("minimum", low)),
                         maximum=float(schema.get("maximum", high)))
        if kind == "string" and schema.get("format") in ("int64", "uint64"):
            low, high = _described_range(description, *INTEGER_RANGES[schema["format"]])
            return Field(where, "string", readonly=readonly, number_as_string=True, minimum=low, maximum=high,
                         pattern=r"-?[0-9]+")
        if kind == "string":
            pattern = (schema.get("pattern") or next(iter(DESCRIBED_PATTERN.findall(description)), None)
                       or (RFC1035 if "RFC1035" in description else None))
            lengths, longest = DESCRIBED_LENGTH.search(description), DESCRIBED_MAX_LENGTH.search(description)
            low, high = (lengths[1], lengths[2]) if lengths else (None, longest[1] if longest else None)
            return Field(where, "string", readonly=readonly, enum=tuple(schema["enum"]) if "enum" in schema else None,
                         pattern=pattern, min_length=int(low) if low else None, max_length=int(high) if high else None)
        if kind in ("number", "boolean", "any"):
            return Field(where, kind, readonly=readonly)
        raise AssertionError(f"{where}: a schema of type {kind}")


# --- where the google-beta provider sends each input (terraform-provider-google-beta's resources, field by field) ---
def _compute_url(root: str, *names: str) -> dict[str, str]:
    """Inputs that become parameters of a compute request's URL (its path), named as the provider names them."""
    return {name: f"compute:{root}?.{name}" for name in names}


def _secret_resource(secret_id: str) -> str:
    """The provider's secret id as the resource of an IAM request: projects/<project>/secrets/<id>."""
    return secret_id if secret_id.startswith("projects/") else f"projects/my-gcp-project/secrets/{secret_id}"


def _schedules(schedules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The autoscaler's scaling schedules: a list of named objects as inputs, a map from name to schedule on the
    wire (expandComputeRegionAutoscalerAutoscalingPolicyScalingSchedules)."""
    return {s["name"]: {k: v for k, v in s.items() if k != "name"} for s in schedules or ()}


def _project(project: str) -> str:
    """A project as the parent a Monitoring request's URL names: projects/<project>."""
    return f"projects/{project}"


DISK_INIT = {f"disks[].{name}": f"disks[].initializeParams.{name}"
             for name in ("diskSizeGb", "diskType", "sourceImage", "labels")}

RESOURCES: dict[str, Resource] = {
    "gcp:compute/network:Network": Resource("compute:networks/insert", name="name"),
    "gcp:compute/subnetwork:Subnetwork": Resource("compute:subnetworks/insert",
                                                  _compute_url("subnetworks/insert", "region"), name="name"),
    "gcp:compute/router:Router": Resource("compute:routers/insert", _compute_url("routers/insert", "region"),
                                          name="name"),
    "gcp:compute/routerNat:RouterNat": Resource(  # a NAT is an item of its router's nats: the provider patches it
        "compute:routers/patch.nats[]", {**_compute_url("routers/patch", "region", "router"),
                                         "subnetworks[].sourceIpRangesToNats": "subnetworks[].sourceIpRangesToNat"},
        name="name"),
    "gcp:compute/firewall:Firewall": Resource("compute:firewalls/insert", {
        "allows": "allowed", "allows[].protocol": "allowed[].IPProtocol",
        "denies": "denied", "denies[].protocol": "denied[].IPProtocol"}, name="name"),
    "gcp:compute/healthCheck:HealthCheck": Resource("compute:healthChecks/insert", name="name"),
    "gcp:compute/securityPolicy:SecurityPolicy": Resource("compute:securityPolicies/insert", name="name"),
    "gcp:compute/globalAddress:GlobalAddress": Resource("compute:globalAddresses/insert", name="name"),
    "gcp:compute/managedSslCertificate:ManagedSslCertificate": Resource(
        "compute:sslCertificates/insert", name="name", supplied={"type": "MANAGED, for the managed block"}),
    "gcp:compute/sSLPolicy:SSLPolicy": Resource("compute:sslPolicies/insert", name="name"),
    "gcp:compute/backendBucket:BackendBucket": Resource("compute:backendBuckets/insert", name="name"),
    "gcp:compute/backendService:BackendService": Resource("compute:backendServices/insert", {
        "connectionDrainingTimeoutSec": "connectionDraining.drainingTimeoutSec", "healthChecks": "healthChecks[]",
        # set with a second call once the service exists (resourceComputeBackendServiceCreate)
        "securityPolicy": "compute:backendServices/setSecurityPolicy.securityPolicy"}, name="name"),
    "gcp:compute/uRLMap:URLMap": Resource("compute:urlMaps/insert", name="name"),
    "gcp:compute/targetHttpProxy:TargetHttpProxy": Resource("compute:targetHttpProxies/insert", name="name"),
    "gcp:compute/targetHttpsProxy:TargetHttpsProxy": Resource("compute:targetHttpsProxies/insert", name="name"),
    "gcp:compute/globalForwardingRule:GlobalForwardingRule": Resource("compute:globalForwardingRules/insert",
                                                                      name="name"),
    "gcp:compute/instanceTemplate:InstanceTemplate": Resource("compute:instanceTemplates/insert.properties", {
        "description": "compute:instanceTemplates/insert.description",  # the template's; instanceDescription the VMs'
        "metadata": Pairs("metadata.items[].key", "metadata.items[].value"),
        "serviceAccount": "serviceAccounts[]", **DISK_INIT}, name="compute:instanceTemplates/insert.name"),
    "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager": Resource(
        "compute:regionInstanceGroupManagers/insert", {
            **_compute_url("regionInstanceGroupManagers/insert", "region"),
            # The manager's namedPorts are output only; the provider sets them on its instance group
            # (setNamedPorts, as each update does).
            "namedPorts": "compute:regionInstanceGroups/setNamedPorts.namedPorts",
            "autoHealingPolicies": "autoHealingPolicies[]",
            "distributionPolicyZones": "distributionPolicy.zones",
            "distributionPolicyZones[]": "distributionPolicy.zones[].zone",
            "distributionPolicyTargetShape": "distributionPolicy.targetShape",
            "updatePolicy.maxSurgeFixed": "updatePolicy.maxSurge.fixed",
            "updatePolicy.maxUnavailableFixed": "updatePolicy.maxUnavailable.fixed",
            "waitForInstances": ProviderOnly("the provider waits for the group's VMs before it returns"),
            "waitForInstancesStatus": ProviderOnly("the state the provider waits for (STABLE or UPDATED)")},
        name="name"),
    "gcp:compute/regionAutoscaler:RegionAutoscaler": Resource("compute:regionAutoscalers/insert", {
        **_compute_url("regionAutoscalers/insert", "region"),
        "autoscalingPolicy.cooldownPeriod": "autoscalingPolicy.coolDownPeriodSec",
        "autoscalingPolicy.maxReplicas": "autoscalingPolicy.maxNumReplicas",
        "autoscalingPolicy.minReplicas": "autoscalingPolicy.minNumReplicas",
        "autoscalingPolicy.loadBalancingUtilization.target":
            "autoscalingPolicy.loadBalancingUtilization.utilizationTarget",
        "autoscalingPolicy.scalingSchedules": Sent("autoscalingPolicy.scalingSchedules", _schedules),
        # the metric blocks: customMetricUtilizations (expandComputeRegionAutoscalerAutoscalingPolicyMetric)
        "autoscalingPolicy.metrics": "autoscalingPolicy.customMetricUtilizations",
        "autoscalingPolicy.metrics[].name": "autoscalingPolicy.customMetricUtilizations[].metric",
        "autoscalingPolicy.metrics[].target": "autoscalingPolicy.customMetricUtilizations[].utilizationTarget",
        "autoscalingPolicy.metrics[].type": "autoscalingPolicy.customMetricUtilizations[].utilizationTargetType"},
        name="name"),
    "gcp:dns/recordSet:RecordSet": Resource("dns:changes/create.additions[]", {  # one Change that adds the set
        "managedZone": "dns:changes/create?.managedZone"}),
    "gcp:secretmanager/secret:Secret": Resource("secretmanager:projects/secrets/create", {
        "secretId": "secretmanager:projects/secrets/create?.secretId", "replication.auto": "replication.automatic"}),
    "gcp:secretmanager/secretVersion:SecretVersion": Resource("secretmanager:projects/secrets/addVersion", {
        "secret": "secretmanager:projects/secrets/addVersion?.parent", "secretData": "payload.data"}),
    "gcp:secretmanager/secretIamMember:SecretIamMember": Resource(  # read-modify-write of the secret's policy
        "secretmanager:projects/secrets/setIamPolicy.policy", {
            "secretId": Sent("secretmanager:projects/secrets/setIamPolicy?.resource", _secret_resource),
            "member": "bindings[].members[]", "role": "bindings[].role"}),
    "gcp:projects/iAMMember:IAMMember": Resource(  # read-modify-write of the project's policy
        "cloudresourcemanager:projects/setIamPolicy.policy", {
            "project": "cloudresourcemanager:projects/setIamPolicy?.resource",
            "member": "bindings[].members[]", "role": "bindings[].role"}),
    # The dashboard's JSON is the request's body as it stands (resourceMonitoringDashboardCreate).
    "gcp:monitoring/dashboard:Dashboard": Resource("dashboards:projects/dashboards/create", {
        "project": Sent("dashboards:projects/dashboards/create?.parent", _project),
        "dashboardJson": Sent("dashboards:projects/dashboards/create", json.loads)}),
    "gcp:monitoring/alertPolicy:AlertPolicy": Resource("monitoring:projects/alertPolicies/create", {
        "project": Sent("monitoring:projects/alertPolicies/create?.name", _project)}),
    "gcp:monitoring/notificationChannel:NotificationChannel": Resource(
        "monitoring:projects/notificationChannels/create", {
            "project": Sent("monitoring:projects/notificationChannels/create?.name", _project)}),
    "gcp:serviceaccount/account:Account": Resource("iam:projects/serviceAccounts/create", {
        "displayName": "serviceAccount.displayName"}),
    "gcp:storage/bucket:Bucket": Resource("storage:buckets/insert", {
        "uniformBucketLevelAccess": "iamConfiguration.uniformBucketLevelAccess.enabled",
        "publicAccessPrevention": "iamConfiguration.publicAccessPrevention",
        "forceDestroy": ProviderOnly("on delete, the provider deletes the bucket's objects first")}, name="name"),
    "gcp:storage/bucketIAMMember:BucketIAMMember": Resource("storage:buckets/setIamPolicy", {  # read-modify-write
        "bucket": "storage:buckets/setIamPolicy?.bucket",
        "member": "bindings[].members[]", "role": "bindings[].role"}),
    "gcp:storage/bucketObject:BucketObject": Resource("storage:objects/insert", {
        "bucket": "storage:objects/insert?.bucket",
        "source": ProviderOnly("the upload's media: the object's bytes, not a field of its metadata")}),
    # The provider's own resource: its default labels join each resource's labels; project and region fill URLs.
    "pulumi:providers:gcp": Resource("compute:subnetworks/insert?", {
        "defaultLabels": "secretmanager:projects/secrets/create.labels"}),
}
