"""The edge of an Azure stack: the Application Gateway v2 (TLS from Key Vault, the /health probe, long requests,
unbuffered streams, what it lets through) and the endpoint's DNS record."""

from __future__ import annotations

import re

import pulumi
from pulumi_azure_native import authorization, dns, managedidentity, network

from components.base import FleetComponent
from fleet import serving
from fleet.spec import FleetSpec

from .identity import KEY_VAULT_SECRETS_USER
from .options import _DNS_ZONE_ID, _SECRET_ID, AzureOptions

# How long the gateway waits for a response; a streamed answer keeps it busy, a long non-streamed one does not.
GATEWAY_REQUEST_TIMEOUT_SECONDS = 1200
REFUSED_PATH = "/not-served-publicly"  # a path vLLM has no route for: 404
# Let in-flight generations finish before a VM leaves the backend pool (scale-in, rolling upgrade).
DRAIN_TIMEOUT_SECONDS = 300
GATEWAY_MAX_CAPACITY_UNITS = 10
TLS_POLICY = "AppGwSslPolicy20220101S"  # TLS 1.2+ with strong ciphers only
HEALTH_PROBE_INTERVAL_SECONDS = 15


def gateway(fleet: FleetComponent, spec: FleetSpec, options: AzureOptions, group, subnet, public_ip):
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
        backend_address_pools=[network.ApplicationGatewayBackendAddressPoolArgs(name="vllm")],
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
        # vLLM serves /metrics without the API key: the gateway rewrites such paths to one vLLM answers
        # with 404, so they never reach vLLM from outside (a Standard_v2 gateway has no fixed responses).
        rewrite_rule_sets=[network.ApplicationGatewayRewriteRuleSetArgs(
            name="hide-internal", rewrite_rules=[network.ApplicationGatewayRewriteRuleArgs(
                name="internal-paths", rule_sequence=100,
                conditions=[network.ApplicationGatewayRewriteRuleConditionArgs(
                    variable="var_uri_path", ignore_case=True,
                    pattern="^(" + "|".join(re.escape(p) for p in serving.INTERNAL_PATH_PREFIXES) + ")")],
                action_set=network.ApplicationGatewayRewriteRuleActionSetArgs(
                    url_configuration=network.ApplicationGatewayUrlConfigurationArgs(
                        modified_path=REFUSED_PATH, reroute=False)))])],
        request_routing_rules=[network.ApplicationGatewayRequestRoutingRuleArgs(
            name="vllm", rule_type="Basic", priority=100, http_listener=part("httpListeners", scheme),
            backend_address_pool=part("backendAddressPools", "vllm"),
            backend_http_settings=part("backendHttpSettingsCollection", "vllm"),
            rewrite_rule_set=part("rewriteRuleSets", "hide-internal"))],
        opts=fleet.child_opts(depends_on=depends_on))
    return gateway, pulumi.Output.concat(prefix, "/backendAddressPools/vllm")

def dns_record(fleet: FleetComponent, spec: FleetSpec, public_ip) -> None:
    if not spec.dns_zone:
        fleet.warn(f"{spec.stack}: point {spec.domain} (CNAME) at the gateway's DNS name to use the endpoint.")
        return
    match = _DNS_ZONE_ID.match(spec.dns_zone)
    zone = match["name"].lower()
    dns.RecordSet(fleet.child("endpoint"), resource_group_name=match["group"], zone_name=zone, record_type="A",
                  relative_record_set_name=spec.domain[: -len(zone) - 1] if spec.domain != zone else "@",
                  ttl=300, target_resource=dns.SubResourceArgs(id=public_ip.id), opts=fleet.opts)
