"""The edge of a GCP stack: the global external Application Load Balancer (backend service, URL map, proxy,
forwarding rule, address, TLS), and Cloud Armor, which admits only allowedCidrs and refuses what is not public. With
office hours, the URL map answers the load balancer's 503 (no VM serves) with a JSON object from a bucket that says
when the endpoint serves."""

from __future__ import annotations

import json
import re

import pulumi
from pulumi_gcp import compute, dns, storage

from components.base import FleetComponent
from components.edge_model import API_PATH, Resources, of_type, path_readings, strictest_of
from fleet import iam_names, lifecycle
from fleet.schedule import closed_answer
from fleet.spec import FleetSpec

from .options import label_value

# The load balancer cuts a response (a streamed generation included) that takes longer than this.
BACKEND_TIMEOUT_SECONDS = 1200
# The global external Application Load Balancer keeps idle connections to the VMs open 600 s, a fixed value;
# Google asks for backends that keep them longer (https://cloud.google.com/load-balancing/docs/https#timeouts).
BACKEND_KEEPALIVE_SECONDS = 600
# Cloud Armor accepts at most this many ranges in one basic (src_ip_ranges) rule.
ARMOR_RANGES_PER_RULE = 10
ARMOR_DEFAULT_RULE_PRIORITY = 2147483647
NOT_SERVED_PRIORITY = 100
SECURITY_POLICY = "gcp:compute/securityPolicy:SecurityPolicy"
# The object the load balancer answers with while no VM serves.
CLOSED_OBJECT = "vllm-fleet-closed.json"


def security_policy(fleet: FleetComponent, spec: FleetSpec):
    chunks = [spec.allowed_cidrs[i:i + ARMOR_RANGES_PER_RULE]
              for i in range(0, len(spec.allowed_cidrs), ARMOR_RANGES_PER_RULE)]
    # Only paths of the API's shape (and /health) reach vLLM, which serves /invocations, /tokenize, /metrics and
    # more without the API key: every other path is refused first, whoever asks. request.path is without the query;
    # API_PATH needs no escaping in a CEL string (no quotes, no backslashes).
    not_served = compute.SecurityPolicyRuleArgs(
        action="deny(404)", priority=NOT_SERVED_PRIORITY, description="only the OpenAI API is served",
        match=compute.SecurityPolicyRuleMatchArgs(expr=compute.SecurityPolicyRuleMatchExprArgs(
            expression=f"!request.path.matches('{API_PATH}')")))
    # rateLimits: the allowedCidrs rules throttle each Authorization value (fleet/rate_limits.py, docs/usage.md).
    limit = spec.rate_limits.edge_requests_per_minute(spec.api_key_names)
    throttle = None if limit is None else compute.SecurityPolicyRuleRateLimitOptionsArgs(
        conform_action="allow", exceed_action="deny(429)", enforce_on_key="HTTP_HEADER",
        enforce_on_key_name="Authorization",
        rate_limit_threshold=compute.SecurityPolicyRuleRateLimitOptionsRateLimitThresholdArgs(
            count=limit, interval_sec=60))
    rules = [not_served] + [compute.SecurityPolicyRuleArgs(
        action="allow" if throttle is None else "throttle", priority=1000 + index, description="allowedCidrs",
        rate_limit_options=throttle,
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
        timeout_sec=BACKEND_TIMEOUT_SECONDS,
        # Generations in flight finish before a VM leaves the backend (scale-in, rolling update): the longest the
        # stack allows (docs/drain.md).
        connection_draining_timeout_sec=lifecycle.drain_seconds(spec),
        health_checks=health_check.id, security_policy=security_policy(fleet, spec).self_link,
        # Generations vary from milliseconds to minutes: send each request to the least busy VM.
        locality_lb_policy="LEAST_REQUEST",
        backends=[compute.BackendServiceBackendArgs(
            group=group.instance_group, balancing_mode="RATE", capacity_scaler=1.0,
            max_rate_per_instance=spec.replicas.target_requests_per_minute / 60)],
        opts=fleet.opts)
    url_map = compute.URLMap(fleet.child("lb"), default_service=backend.id,
                             default_custom_error_response_policy=closed_answer_policy(fleet, spec),
                             opts=fleet.opts)
    fleet.url_map_name = url_map.name  # what the dashboard's and the alarms' load balancer series filter on
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


def closed_answer_policy(fleet: FleetComponent, spec: FleetSpec):
    """With office hours: the load balancer's own 503 (no healthy VM: outside the hours, or before the morning's
    VMs serve) becomes the closed answer, a public object of a bucket behind a backend bucket (custom error
    responses are for global external Application Load Balancers)."""
    if not spec.office_hours:
        return None
    bucket = storage.Bucket(iam_names.gcp_closed_bucket(spec.stack), location=spec.region.upper(),
                            uniform_bucket_level_access=True, public_access_prevention="inherited",
                            force_destroy=True, opts=fleet.opts)
    closed = storage.BucketObject(fleet.child("closed"), bucket=bucket.name, name=CLOSED_OBJECT,
                                  source=pulumi.StringAsset(json.dumps(closed_answer(spec.stack, spec.office_hours))),
                                  content_type="application/json", cache_control="no-store", opts=fleet.opts)
    # A backend bucket serves public objects only; this bucket holds nothing else.
    reader = storage.BucketIAMMember(fleet.child("closed-public"), bucket=bucket.name,
                                     role="roles/storage.objectViewer", member="allUsers", opts=fleet.opts)
    errors = compute.BackendBucket(fleet.child("closed"), bucket_name=bucket.name,
                                   description=f"vllm-fleet {spec.stack}: the answer while no VM serves",
                                   opts=fleet.child_opts(depends_on=[closed, reader]))
    return compute.URLMapDefaultCustomErrorResponsePolicyArgs(
        error_service=errors.id,
        error_response_rules=[compute.URLMapDefaultCustomErrorResponsePolicyErrorResponseRuleArgs(
            match_response_codes=["503"], path=f"/{CLOSED_OBJECT}", override_response_code=503)])


# --- the model of this edge (components/edge_model.py) ----------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<op>\|\||&&|!|\(|\))|request\.path\.matches\('(?P<regex>[^'\\]*)'\))")


def _evaluate(expression: str, path: str) -> bool:
    """A Cloud Armor expression of the form this file writes: request.path.matches('...') (a string literal without
    escapes) joined with !, &&, || and parentheses (CEL's precedence). matches is RE2's unanchored search; the
    fleet's expressions anchor themselves and use only what RE2 and Python's re read alike. Anything else raises."""
    tokens, position = [], 0
    while position < len(expression.rstrip()):
        match = _TOKEN.match(expression, position)
        if not match:
            raise ValueError(f"no model of the Cloud Armor expression {expression!r} at {position}")
        position = match.end()
        tokens.append(match["op"] or re.search(match["regex"], path) is not None)

    def disjunction(i: int) -> tuple[bool, int]:
        value, i = conjunction(i)
        while i < len(tokens) and tokens[i] == "||":
            right, i = conjunction(i + 1)
            value = value or right
        return value, i

    def conjunction(i: int) -> tuple[bool, int]:
        value, i = unary(i)
        while i < len(tokens) and tokens[i] == "&&":
            right, i = unary(i + 1)
            value = value and right
        return value, i

    def unary(i: int) -> tuple[bool, int]:
        if tokens[i] == "!":
            value, i = unary(i + 1)
            return not value, i
        if tokens[i] == "(":
            value, i = disjunction(i + 1)
            if tokens[i] != ")":
                raise ValueError(f"unbalanced parentheses in {expression!r}")
            return value, i + 1
        if isinstance(tokens[i], bool):
            return tokens[i], i + 1
        raise ValueError(f"unexpected {tokens[i]!r} in {expression!r}")

    value, end = disjunction(0)
    if end != len(tokens):
        raise ValueError(f"trailing tokens in {expression!r}")
    return value


def edge_answers(resources: Resources, method: str, path: str) -> dict[str, int | None]:
    """Cloud Armor's rules in priority order, lowest first, for a client in allowedCidrs (a src_ip_ranges rule
    matches it unless it names other ranges than the stack's; "*" matches anyone); the first match decides: allow
    (and throttle, under its rate) passes the request on, deny(N) answers N. Google does not say whether request.path is decoded or normalised:
    every reading of it."""
    [policy] = of_type(resources, SECURITY_POLICY)
    rules = sorted(policy["rules"], key=lambda rule: rule["priority"])

    def answer(reading: str) -> int | None:
        for rule in rules:
            match = rule["match"]
            if "expr" in match:
                matched = _evaluate(match["expr"]["expression"], reading)
            elif match.get("versionedExpr") == "SRC_IPS_V1":
                matched = True  # the client is in allowedCidrs, and "*" is everyone
            else:
                raise ValueError(f"no model of the Cloud Armor match {match}")
            if matched:
                if rule["action"] in ("allow", "throttle"):  # throttle: allow up to its rate (not modelled)
                    return None
                return int(re.fullmatch(r"deny\((\d{3})\)", rule["action"])[1])
        raise ValueError("a Cloud Armor policy ends with a rule that matches everyone")

    return {reading: answer(reading) for reading in path_readings(path)}


edge_answer = strictest_of(edge_answers)
