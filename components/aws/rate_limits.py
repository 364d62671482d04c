"""rateLimits at the AWS edge: a WAF web ACL on the ALB with one rate-based rule that counts the requests of each
Authorization header value (custom aggregation key) over 60 s and answers 429, Retry-After and an OpenAI-style
error over the limit. The limit is the highest requestsPerMinute of the stack's keys (fleet/rate_limits.py): the
edge cannot tell which key a token is, and each key's own limit is the VMs' (docs/usage.md)."""

from __future__ import annotations

from pulumi_aws import wafv2

from components.base import FleetComponent
from fleet import rate_limits
from fleet.spec import FleetSpec

# A rate-based rule counts at least 10 requests per evaluation window; the shortest window is 60 s.
WAF_MINIMUM_LIMIT = 10
WINDOW_SECONDS = 60
BODY_KEY = "rate-limited"


def _visibility(metric: str) -> dict:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": False}


def edge_rate_limit(fleet: FleetComponent, spec: FleetSpec, alb) -> None:
    limit = spec.rate_limits.edge_requests_per_minute(spec.api_key_names)
    if limit is None:
        return
    limit = max(limit, WAF_MINIMUM_LIMIT)
    acl = wafv2.WebAcl(
        fleet.child("rate-limit"), scope="REGIONAL", description=f"vllm-fleet {spec.stack}: rateLimits per API key",
        default_action={"allow": {}},
        custom_response_bodies=[{"key": BODY_KEY, "content": rate_limits.edge_error_body(limit),
                                 "content_type": "APPLICATION_JSON"}],
        rules=[{
            "name": "per-authorization", "priority": 0,
            "action": {"block": {"custom_response": {
                "response_code": 429, "custom_response_body_key": BODY_KEY,
                "response_headers": [{"name": "Retry-After", "value": str(WINDOW_SECONDS)}]}}},
            "statement": {"rate_based_statement": {
                "limit": limit, "evaluation_window_sec": WINDOW_SECONDS, "aggregate_key_type": "CUSTOM_KEYS",
                "custom_keys": [{"header": {"name": "authorization",
                                            "text_transformations": [{"priority": 0, "type": "NONE"}]}}]}},
            "visibility_config": _visibility(f"{spec.name}-per-authorization"),
        }],
        visibility_config=_visibility(f"{spec.name}-rate-limit"), opts=fleet.opts)
    wafv2.WebAclAssociation(fleet.child("rate-limit"), resource_arn=alb.arn, web_acl_arn=acl.arn, opts=fleet.opts)
