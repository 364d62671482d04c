"""The edge of an Azure stack: the Application Gateway v2 (TLS from Key Vault, the /health probe, long requests,
unbuffered streams) and the endpoint's DNS record. Path-based routing lets the OpenAI API under /v1/ and /health
through to vLLM; every other path goes to a backend pool without members, which the gateway answers itself. With
office hours, the gateway's 502 (no VM serves) shows a page that says when the endpoint serves."""

from __future__ import annotations

import hashlib
import html
import re

import pulumi
import pulumi_random
from pulumi_azure_native import authorization, dns, managedidentity, network, storage

from components.base import FleetComponent
from components.edge_model import API_PATH, Resources, of_type, path_readings, strictest_of
from fleet import serving
from fleet.schedule import closed_answer
from fleet.spec import FleetSpec

from .identity import KEY_VAULT_SECRETS_USER
from .options import _DNS_ZONE_ID, _SECRET_ID, AzureOptions

# How long the gateway waits for a response; a streamed answer keeps it busy, a long non-streamed one does not.
GATEWAY_REQUEST_TIMEOUT_SECONDS = 1200
VLLM_POOL, REFUSED_POOL = "vllm", "refused"
# Path rules match only prefixes: a rewrite on the API's rule sends a request whose path is not of the API's shape
# (edge_model.API_PATH) to this path instead, and the path map is evaluated again ("reroute"), so it lands in the
# refused pool. The server variable request_uri is "the full original request URI (with arguments)": the path as
# sent, whatever the gateway may decode or resolve for its path map.
NOT_API_SHAPE, REFUSED_PATH = "not-the-api-shape", "/refused"
REQUEST_URI = "var_request_uri"
API_REQUEST_URI = API_PATH.removesuffix("$") + "([?].*)?$"  # request_uri has the query string too
GATEWAY = "azure-native:network:ApplicationGateway"
SCALE_SET = "azure-native:compute:VirtualMachineScaleSet"
# The gateway's own answer to a request routed to a pool without members.
EMPTY_POOL_STATUS = 502
# Let in-flight generations finish before a VM leaves the backend pool (scale-in, rolling upgrade).
DRAIN_TIMEOUT_SECONDS = 300
GATEWAY_MAX_CAPACITY_UNITS = 10
TLS_POLICY = "AppGwSslPolicy20220101S"  # TLS 1.2+ with strong ciphers only
HEALTH_PROBE_INTERVAL_SECONDS = 15
# The closed page: a storage account's static website (account names: 3-24 lower-case letters and digits, unique in
# Azure). The gateway's custom error pages are HTML pages at a public URL ending in .htm or .html.
CLOSED_ACCOUNT_PREFIX, CLOSED_ACCOUNT_RANDOM = "vllmclosed", 12
# The gateway never reads a custom error page again once it has it ("To modify an existing custom error page, you
# must point to a different blob location ... The application gateway doesn't periodically check the blob location
# to fetch new versions", Microsoft's "Create Application Gateway custom error pages"): the page's name carries a
# hash of its content, so a new page (other hours, another stack name) is a new URL the gateway downloads.
CLOSED_PAGE_PREFIX, CLOSED_PAGE_HASH = "vllm-fleet-closed-", 16


def closed_page_name(content: str) -> str:
    return f"{CLOSED_PAGE_PREFIX}{hashlib.sha256(content.encode()).hexdigest()[:CLOSED_PAGE_HASH]}.html"


def closed_page(fleet: FleetComponent, spec: FleetSpec, group):
    """With office hours: the page the gateway shows for its own 502 (no healthy VM: outside the hours, before the
    morning's VMs serve; also any path it refuses), on a static website of its own; None without."""
    if not spec.office_hours:
        return None
    unique = pulumi_random.RandomString(fleet.child("closed"), length=CLOSED_ACCOUNT_RANDOM, special=False,
                                        upper=False, opts=fleet.opts)
    account = storage.StorageAccount(
        fleet.child("closed"), account_name=pulumi.Output.concat(CLOSED_ACCOUNT_PREFIX, unique.result),
        resource_group_name=group, location=spec.region, tags=fleet.tags, kind="StorageV2",
        sku=storage.SkuArgs(name="Standard_LRS"), minimum_tls_version="TLS1_2", enable_https_traffic_only=True,
        allow_blob_public_access=False, opts=fleet.opts)
    website = storage.StorageAccountStaticWebsite(fleet.child("closed"), account_name=account.name,
                                                  resource_group_name=group, opts=fleet.opts)
    message = html.escape(closed_answer(spec.stack, spec.office_hours)["error"]["message"])
    content = (f"<!doctype html>\n<title>vllm-fleet {html.escape(spec.stack)}: no VM serving</title>\n"
               f"<p>{message}</p>\n<p>The endpoint serves the OpenAI API under {serving.PUBLIC_API_PREFIX} only.</p>\n")
    page = storage.Blob(
        fleet.child("closed"), account_name=account.name, resource_group_name=group,
        container_name=website.container_name, blob_name=closed_page_name(content), content_type="text/html",
        source=pulumi.StringAsset(content), opts=fleet.opts)
    return pulumi.Output.concat(account.primary_endpoints.web, page.name)


def gateway(fleet: FleetComponent, spec: FleetSpec, options: AzureOptions, group, subnet, public_ip):
    closed_page_url = closed_page(fleet, spec, group)
    gateway_name = f"{spec.name}-gateway"
    prefix = pulumi.Output.concat("/subscriptions/", fleet.subscription_id, "/resourceGroups/", group,
                                  "/providers/Microsoft.Network/applicationGateways/", gateway_name)

    def part(kind: str, part_name: str):
        return network.SubResourceArgs(id=pulumi.Output.concat(prefix, f"/{kind}/{part_name}"))

    tls = spec.certificate is not None
    scheme = "https" if tls else "http"
    identity, depends_on, certificates = None, [], None
    if tls:
        # The gateway reads the certificate with an identity of its own, allowed that one secret only.
        gateway_identity = managedidentity.UserAssignedIdentity(
            fleet.child("gateway"), resource_group_name=group, location=spec.region, tags=fleet.tags,
            opts=fleet.opts)
        certificate_name = _SECRET_ID.match(spec.certificate)["name"]
        depends_on.append(authorization.RoleAssignment(
            fleet.child("read-certificate"),
            scope=f"{options.certificate_vault_id}/secrets/{certificate_name}",
            principal_id=gateway_identity.principal_id, principal_type="ServicePrincipal",
            role_definition_id=fleet.role_id(KEY_VAULT_SECRETS_USER),
            description=f"vllm-fleet {spec.stack}: the gateway reads its TLS certificate", opts=fleet.opts))
        identity = network.ManagedServiceIdentityArgs(type="UserAssigned",
                                                      user_assigned_identities=[gateway_identity.id])
        certificates = [network.ApplicationGatewaySslCertificateArgs(name="tls",
                                                                     key_vault_secret_id=spec.certificate)]
    else:
        fleet.warn_plain_http(spec, "Set domain and certificate (a Key Vault secret id) for HTTPS.")

    gateway = network.ApplicationGateway(
        fleet.child("gateway"), application_gateway_name=gateway_name, resource_group_name=group,
        location=spec.region, tags=fleet.tags, identity=identity,
        sku=network.ApplicationGatewaySkuArgs(name="Standard_v2", tier="Standard_v2"),
        autoscale_configuration=network.ApplicationGatewayAutoscaleConfigurationArgs(
            min_capacity=1, max_capacity=GATEWAY_MAX_CAPACITY_UNITS),
        enable_http2=True,
        # Tokens stream as server-sent events: pass each one on at once instead of buffering the response.
        global_configuration=network.ApplicationGatewayGlobalConfigurationArgs(
            enable_request_buffering=True, enable_response_buffering=False),
        gateway_ip_configurations=[network.ApplicationGatewayIPConfigurationArgs(
            name="gateway", subnet=network.SubResourceArgs(id=subnet.id))],
        frontend_ip_configurations=[network.ApplicationGatewayFrontendIPConfigurationArgs(
            name="public", public_ip_address=network.SubResourceArgs(id=public_ip.id))],
        frontend_ports=[network.ApplicationGatewayFrontendPortArgs(name=scheme, port=443 if tls else 80)],
        ssl_certificates=certificates,
        ssl_policy=network.ApplicationGatewaySslPolicyArgs(policy_type="Predefined", policy_name=TLS_POLICY)
        if tls else None,
        http_listeners=[network.ApplicationGatewayHttpListenerArgs(
            name=scheme, protocol="Https" if tls else "Http",
            frontend_ip_configuration=part("frontendIPConfigurations", "public"),
            frontend_port=part("frontendPorts", scheme),
            ssl_certificate=part("sslCertificates", "tls") if tls else None)],
        custom_error_configurations=[network.ApplicationGatewayCustomErrorArgs(
            status_code=f"HttpStatus{EMPTY_POOL_STATUS}", custom_error_page_url=closed_page_url)]
        if closed_page_url else None,
        # "vllm" holds the scale set's VMs; "refused" never holds any, so what is routed there gets the gateway's own
        # 502 (a Standard_v2 gateway has no fixed responses) and never reaches a VM.
        backend_address_pools=[network.ApplicationGatewayBackendAddressPoolArgs(name=VLLM_POOL),
                               network.ApplicationGatewayBackendAddressPoolArgs(name=REFUSED_POOL)],
        probes=[network.ApplicationGatewayProbeArgs(
            name="vllm-health", protocol="Http", port=serving.SERVE_PORT, path=serving.HEALTH_PATH,
            interval=HEALTH_PROBE_INTERVAL_SECONDS, timeout=5, unhealthy_threshold=3,
            pick_host_name_from_backend_http_settings=True,
            match=network.ApplicationGatewayProbeHealthResponseMatchArgs(status_codes=["200"]))],
        backend_http_settings_collection=[network.ApplicationGatewayBackendHttpSettingsArgs(
            name="vllm", protocol="Http", port=serving.SERVE_PORT, cookie_based_affinity="Disabled",
            request_timeout=GATEWAY_REQUEST_TIMEOUT_SECONDS, pick_host_name_from_backend_address=True,
            probe=part("probes", "vllm-health"),
            connection_draining=network.ApplicationGatewayConnectionDrainingArgs(
                enabled=True, drain_timeout_in_sec=DRAIN_TIMEOUT_SECONDS))],
        # Only the API (and /health) reach vLLM, which serves /invocations, /tokenize, /metrics and more without the
        # API key: path-based routing sends those two to the VMs and everything else to the empty pool.
        url_path_maps=[network.ApplicationGatewayUrlPathMapArgs(
            name="vllm", default_backend_address_pool=part("backendAddressPools", REFUSED_POOL),
            default_backend_http_settings=part("backendHttpSettingsCollection", "vllm"),
            path_rules=[network.ApplicationGatewayPathRuleArgs(
                name="openai-api", paths=[f"{serving.PUBLIC_API_PREFIX}*", *serving.PUBLIC_PATHS],
                backend_address_pool=part("backendAddressPools", VLLM_POOL),
                backend_http_settings=part("backendHttpSettingsCollection", "vllm"),
                rewrite_rule_set=part("rewriteRuleSets", NOT_API_SHAPE))])],
        rewrite_rule_sets=[network.ApplicationGatewayRewriteRuleSetArgs(name=NOT_API_SHAPE, rewrite_rules=[
            network.ApplicationGatewayRewriteRuleArgs(
                name=NOT_API_SHAPE, rule_sequence=100,
                conditions=[network.ApplicationGatewayRewriteRuleConditionArgs(
                    variable=REQUEST_URI, pattern=API_REQUEST_URI, ignore_case=False, negate=True)],
                action_set=network.ApplicationGatewayRewriteRuleActionSetArgs(
                    url_configuration=network.ApplicationGatewayUrlConfigurationArgs(
                        modified_path=REFUSED_PATH, reroute=True)))])],
        request_routing_rules=[network.ApplicationGatewayRequestRoutingRuleArgs(
            name="vllm", rule_type="PathBasedRouting", priority=100, http_listener=part("httpListeners", scheme),
            url_path_map=part("urlPathMaps", "vllm"))],
        opts=fleet.child_opts(depends_on=depends_on))
    return gateway, pulumi.Output.concat(prefix, f"/backendAddressPools/{VLLM_POOL}")

def dns_record(fleet: FleetComponent, spec: FleetSpec, public_ip) -> None:
    if not spec.dns_zone:
        fleet.warn(f"{spec.stack}: point {spec.domain} (CNAME) at the gateway's DNS name to use the endpoint.")
        return
    match = _DNS_ZONE_ID.match(spec.dns_zone)
    zone = match["name"].lower()
    dns.RecordSet(fleet.child("endpoint"), resource_group_name=match["group"], zone_name=zone, record_type="A",
                  relative_record_set_name=spec.domain[: -len(zone) - 1] if spec.domain != zone else "@",
                  ttl=300, target_resource=dns.SubResourceArgs(id=public_ip.id), opts=fleet.opts)


# --- the model of this edge (components/edge_model.py) ----------------------------------------------------
def _path_rule_matches(pattern: str, path: str) -> bool:
    """An Application Gateway path rule: case-insensitive ("Path rules are case insensitive"), `*` only at its end."""
    pattern, path = pattern.lower(), path.lower()
    return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern


def _rerouted_path(rewrite_set: dict, request_uri: str) -> str | None:
    """The path a rewrite set's rules send the request to for the path map's second look, if one does: rules in
    their sequence; a condition on request_uri (the request-target as sent) holds when its regular expression
    matches (a search: the fleet's are anchored), or when it does not with `negate`."""
    for rule in sorted(rewrite_set["rewriteRules"], key=lambda rule: rule["ruleSequence"]):
        for condition in rule["conditions"]:
            if condition["variable"] != REQUEST_URI or condition.get("ignoreCase"):
                raise ValueError(f"no model of the rewrite condition {condition}")
        if all((re.search(c["pattern"], request_uri) is not None) != c.get("negate", False)
               for c in rule["conditions"]):
            url = rule["actionSet"]["urlConfiguration"]
            if not url.get("reroute"):
                raise ValueError(f"no model of the URL rewrite {url}")
            return url["modifiedPath"]
    return None


def edge_answers(resources: Resources, method: str, path: str) -> dict[str, int | None]:
    """The listener's routing rule: its URL path map's rules in order, else the map's default pool; a rule's rewrite
    set may reroute the request, and the map is evaluated again with the new path. A pool the scale set's VMs
    belong to passes the request on; any other pool has no members: the gateway answers 502. Microsoft does not say
    whether the path map sees the path decoded or normalised: every reading of it."""
    [gateway] = of_type(resources, GATEWAY)
    [routing] = gateway["requestRoutingRules"]
    if routing["ruleType"] != "PathBasedRouting":
        raise ValueError(f"no model of the routing rule type {routing['ruleType']!r}")
    [path_map] = [m for m in gateway["urlPathMaps"] if routing["urlPathMap"]["id"].endswith(f"/urlPathMaps/{m['name']}")]
    rewrite_sets = {s["name"]: s for s in gateway.get("rewriteRuleSets", [])}
    served = {pool["id"] for scale_set in of_type(resources, SCALE_SET)
              for nic in scale_set["virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"]
              for ip in nic["ipConfigurations"] for pool in ip.get("applicationGatewayBackendAddressPools", [])}

    def pool_of(reading: str, rewrite: bool) -> str:
        for rule in path_map["pathRules"]:
            if any(_path_rule_matches(pattern, reading) for pattern in rule["paths"]):
                if rewrite and "rewriteRuleSet" in rule:
                    rewrite_set = rewrite_sets[rule["rewriteRuleSet"]["id"].rsplit("/rewriteRuleSets/", 1)[1]]
                    rerouted = _rerouted_path(rewrite_set, path)
                    if rerouted is not None:
                        return pool_of(rerouted, rewrite=False)  # the second look applies no rewrite again
                return rule["backendAddressPool"]["id"]
        return path_map["defaultBackendAddressPool"]["id"]

    return {reading: None if pool_of(reading, rewrite=True) in served else EMPTY_POOL_STATUS
            for reading in path_readings(path)}


edge_answer = strictest_of(edge_answers)
