"""The edge of a GCP stack: the global external Application Load Balancer (backend service, URL map, proxy,
forwarding rule, address, TLS), and Cloud Armor, which admits only allowedCidrs and refuses what is not public."""

from __future__ import annotations

from pulumi_gcp import compute, dns

from components.base import FleetComponent
from fleet import serving
from fleet.spec import FleetSpec

from .options import label_value

# The load balancer cuts a response (a streamed generation included) that takes longer than this.
BACKEND_TIMEOUT_SECONDS = 1200
# Let in-flight generations finish before a VM leaves the backend (scale-in, rolling update).
CONNECTION_DRAINING_SECONDS = 300
# Cloud Armor accepts at most this many ranges in one basic (src_ip_ranges) rule.
ARMOR_RANGES_PER_RULE = 10
ARMOR_DEFAULT_RULE_PRIORITY = 2147483647


def security_policy(fleet: FleetComponent, spec: FleetSpec):
    chunks = [spec.allowed_cidrs[i:i + ARMOR_RANGES_PER_RULE]
              for i in range(0, len(spec.allowed_cidrs), ARMOR_RANGES_PER_RULE)]
    # vLLM serves /metrics without the API key: refused here before any source IP is allowed.
    hide_internal = compute.SecurityPolicyRuleArgs(
        action="deny(404)", priority=100, description="internal paths",
        match=compute.SecurityPolicyRuleMatchArgs(expr=compute.SecurityPolicyRuleMatchExprArgs(
            expression=" || ".join(f"request.path.startsWith('{prefix}')"
                                   for prefix in serving.INTERNAL_PATH_PREFIXES))))
    rules = [hide_internal] + [compute.SecurityPolicyRuleArgs(
        action="allow", priority=1000 + index, description="allowedCidrs",
        match=compute.SecurityPolicyRuleMatchArgs(
            versioned_expr="SRC_IPS_V1", config=compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=list(chunk))))
        for index, chunk in enumerate(chunks)]
    rules.append(compute.SecurityPolicyRuleArgs(
        action="deny(403)", priority=ARMOR_DEFAULT_RULE_PRIORITY, description="everyone else",
        match=compute.SecurityPolicyRuleMatchArgs(
            versioned_expr="SRC_IPS_V1", config=compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=["*"]))))
    return compute.SecurityPolicy(fleet.child("allowed-cidrs"), type="CLOUD_ARMOR", rules=rules,
                                  description=f"vllm-fleet {spec.stack}: only allowedCidrs reach the endpoint",
                                  opts=fleet.opts)

def load_balancer(fleet: FleetComponent, spec: FleetSpec, group, health_check):
    backend = compute.BackendService(
        fleet.child("vllm"), load_balancing_scheme="EXTERNAL_MANAGED", protocol="HTTP", port_name="http",
        timeout_sec=BACKEND_TIMEOUT_SECONDS, connection_draining_timeout_sec=CONNECTION_DRAINING_SECONDS,
        health_checks=health_check.id, security_policy=security_policy(fleet, spec).self_link,
        # Generations vary from milliseconds to minutes: send each request to the least busy VM.
        locality_lb_policy="LEAST_REQUEST",
        backends=[compute.BackendServiceBackendArgs(
            group=group.instance_group, balancing_mode="RATE", capacity_scaler=1.0,
            max_rate_per_instance=spec.replicas.target_requests_per_minute / 60)],
        opts=fleet.opts)
    url_map = compute.URLMap(fleet.child("lb"), default_service=backend.id, opts=fleet.opts)
    address = compute.GlobalAddress(fleet.child("lb"), ip_version="IPV4", opts=fleet.opts)
    if not spec.domain:
        fleet.warn_plain_http(spec, "Set domain (and dnsZone) for HTTPS.")
        proxy = compute.TargetHttpProxy(fleet.child("http"), url_map=url_map.id, opts=fleet.opts)
        compute.GlobalForwardingRule(fleet.child("http"), target=proxy.id, ip_address=address.id,
                                     port_range="80", ip_protocol="TCP", load_balancing_scheme="EXTERNAL_MANAGED",
                                     opts=fleet.opts)
        return address, "http"
    certificate = spec.certificate or compute.ManagedSslCertificate(
        fleet.child("tls"), managed=compute.ManagedSslCertificateManagedArgs(domains=[spec.domain]),
        opts=fleet.opts).id
    tls_policy = compute.SSLPolicy(fleet.child("tls"), profile="MODERN", min_tls_version="TLS_1_2", opts=fleet.opts)
    proxy = compute.TargetHttpsProxy(fleet.child("https"), url_map=url_map.id, ssl_certificates=[certificate],
                                     ssl_policy=tls_policy.id, opts=fleet.opts)
    compute.GlobalForwardingRule(fleet.child("https"), target=proxy.id, ip_address=address.id,
                                 port_range="443", ip_protocol="TCP", load_balancing_scheme="EXTERNAL_MANAGED",
                                 opts=fleet.opts)
    if spec.dns_zone:
        dns.RecordSet(fleet.child("endpoint"), managed_zone=spec.dns_zone, name=f"{spec.domain}.", type="A",
                      ttl=300, rrdatas=[address.address], opts=fleet.opts)
    else:
        fleet.warn(f"{spec.stack}: point {spec.domain} (A record) at the load balancer's address (gcloud compute "
                   f"addresses list --global --filter=labels.vllm-fleet-stack={label_value(spec.stack)}) to use "
                   f"the endpoint" + (""
                   if spec.certificate else "; Google issues the managed certificate only once it resolves there"))
    return address, "https"
