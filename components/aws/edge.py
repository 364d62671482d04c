"""The edge of an AWS stack: the Application Load Balancer, its target group with the health check, the listener
(HTTPS with the stack's or an issued ACM certificate), and what it lets through to vLLM: the OpenAI API under
/v1/ and /health only. Every other path gets the listener's fixed 404 (vLLM serves /invocations, /tokenize, /metrics
and more without the API key). With office hours, EventBridge Scheduler switches the API's rule to a fixed 503 that
says when the endpoint serves when each window closes, and back when it opens."""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
from pulumi_aws import acm, iam, lb, route53, scheduler

from components.base import FleetComponent
from components.edge_model import API_PATH, Resources, of_type, path_readings, strictest_of
from fleet import lifecycle, serving
from fleet.schedule import Moment, closed_answer
from fleet.spec import FleetSpec

from . import identity
from .options import AwsOptions

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# An idle connection is cut after this long (1-4000 s); streamed tokens keep it busy, a long non-streamed answer
# does not. vLLM keeps idle connections longer than this (serving.keep_alive_seconds).
LB_IDLE_TIMEOUT_SECONDS = 1200
# The listener's answer to every path that is not the API: an OpenAI-style error (a fixed response body holds at
# most 1024 characters).
NOT_SERVED = {"error": {"message": f"not found: this endpoint serves the OpenAI API under {serving.PUBLIC_API_PREFIX}",
                        "type": "not_found_error", "code": 404}}
API_RULE_PRIORITY = 100
# Load balancer and target group names: at most 32 characters (CreateLoadBalancer, CreateTargetGroup), of which
# Pulumi's autonaming takes 8 ("-" and 7 random hex digits) and never shortens the rest.
ALB_NAME_MAX, AUTONAME_SUFFIX = 32, 8
# EventBridge Scheduler: schedule and IAM role names (1-64 characters; Pulumi's autonaming adds 8), and the
# universal target that calls Elastic Load Balancing's ModifyRule with the schedule's input as its parameters.
SCHEDULE_NAME_MAX, ROLE_NAME_MAX = 64, 64
MODIFY_RULE_TARGET = "arn:aws:scheduler:::aws-sdk:elasticloadbalancingv2:modifyRule"
SCHEDULER_DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
LISTENER = "aws:lb/listener:Listener"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"


def load_balancer(fleet: FleetComponent, spec: FleetSpec, options: AwsOptions, vpc_id, subnets, lb_sg):
    alb = lb.LoadBalancer(fleet.short_child("alb", ALB_NAME_MAX - AUTONAME_SUFFIX), load_balancer_type="application", internal=options.internal,
                          subnets=subnets, security_groups=[lb_sg.id], idle_timeout=LB_IDLE_TIMEOUT_SECONDS,
                          drop_invalid_header_fields=True, opts=fleet.opts)
    target_group = lb.TargetGroup(
        fleet.short_child("vllm", ALB_NAME_MAX - AUTONAME_SUFFIX), vpc_id=vpc_id, port=serving.SERVE_PORT, protocol="HTTP", target_type="instance",
        # Generations in flight finish before an instance leaves the target group (scale-in, instance refresh,
        # capacity rebalancing): the longest the stack allows (docs/drain.md).
        deregistration_delay=lifecycle.drain_seconds(spec),
        # Generations vary from milliseconds to minutes: send each request to the least busy VM.
        load_balancing_algorithm_type="least_outstanding_requests",
        health_check=lb.TargetGroupHealthCheckArgs(
            enabled=True, protocol="HTTP", port=str(serving.SERVE_PORT), path=serving.HEALTH_PATH,
            matcher="200", interval=15, timeout=5, healthy_threshold=2, unhealthy_threshold=3),
        opts=fleet.opts)
    return alb, target_group

def listeners(fleet: FleetComponent, spec: FleetSpec, alb, target_group):
    """The listener and the rule that passes the API to vLLM: (the endpoint's scheme, that rule)."""
    refuse = [lb.ListenerDefaultActionArgs(type="fixed-response", fixed_response=lb.ListenerDefaultActionFixedResponseArgs(
        content_type="application/json", status_code="404", message_body=json.dumps(NOT_SERVED)))]
    if not (spec.certificate or spec.dns_zone):
        fleet.warn_plain_http(spec, "Set domain and certificate (or dnsZone) for HTTPS.")
        listener = lb.Listener(fleet.child("http"), load_balancer_arn=alb.arn, port=80, protocol="HTTP",
                               default_actions=refuse, opts=fleet.opts)
        return "http", pass_the_api(fleet, spec, listener, target_group)
    certificate_arn = spec.certificate or issued_certificate(fleet, spec)
    listener = lb.Listener(fleet.child("https"), load_balancer_arn=alb.arn, port=443, protocol="HTTPS",
                           ssl_policy=TLS_POLICY, certificate_arn=certificate_arn, default_actions=refuse,
                           opts=fleet.opts)
    api_rule = pass_the_api(fleet, spec, listener, target_group)
    if spec.dns_zone:
        route53.Record(fleet.child("endpoint"), zone_id=spec.dns_zone, name=spec.domain, type="A",
                       aliases=[route53.RecordAliasArgs(name=alb.dns_name, zone_id=alb.zone_id,
                                                        evaluate_target_health=True)], opts=fleet.opts)
    else:
        fleet.warn(f"{spec.stack}: point {spec.domain} (CNAME) at the load balancer's DNS name to use the endpoint.")
    return "https", api_rule

def pass_the_api(fleet: FleetComponent, spec: FleetSpec, listener, target_group):
    """The one rule that forwards to vLLM: paths of the API's shape and the health check (edge_model.API_PATH, a
    regular expression: a path-pattern wildcard would let `/v1/../invocations` through); the listener's default
    answers everything else. With office hours its action is the schedules' (closed_outside_hours): a `pulumi up`
    at night must not open it."""
    return lb.ListenerRule(fleet.child("openai-api"), listener_arn=listener.arn, priority=API_RULE_PRIORITY,
                           conditions=[lb.ListenerRuleConditionArgs(path_pattern=lb.ListenerRuleConditionPathPatternArgs(
                               regex_values=[API_PATH]))],
                           actions=[lb.ListenerRuleActionArgs(type="forward", target_group_arn=target_group.arn)],
                           # With the actions ignored, a new target group would not reach the rule, and the old
                           # one's delete fail (ResourceInUse): a new target group replaces the rule instead, first
                           # deleted (a listener's priorities are unique).
                           opts=fleet.child_opts(ignore_changes=["actions"], replacement_trigger=target_group.arn,
                                                 delete_before_replace=True) if spec.office_hours else fleet.opts)


def scheduler_cron(moment: Moment) -> str:
    """EventBridge Scheduler's cron: six fields (minutes hours day-of-month month day-of-week year), `?` for the
    day of the month when days of the week are given."""
    hour, minute = moment.hour_and_minute
    return f"cron({minute} {hour} ? * {','.join(SCHEDULER_DAYS[day] for day in moment.days)} *)"


def closed_outside_hours(fleet: FleetComponent, spec: FleetSpec, api_rule, target_group, woken_by=None) -> None:
    """When each window closes, the API's rule answers a fixed 503 that says when the endpoint serves (an ALB
    whose targets are stopped would answer 503 with an HTML page, or 502 while they drain); when it opens, the rule
    forwards to vLLM again. EventBridge Scheduler calls ModifyRule itself, in the stack's time zone. Windows that
    touch are one: an open and a close in the same minute would run in no defined order. With wakeOnRequest the
    closed rule forwards to the activator's Lambda target group (`woken_by`, components/aws/wake_on_request.py)
    instead, which answers the 503 and wakes the fleet on a keyed request."""
    hours = spec.office_hours
    role = identity.service_role(
        fleet, spec, fleet.short_child("switch-api", ROLE_NAME_MAX - AUTONAME_SUFFIX), "scheduler.amazonaws.com",
        description=f"vllm-fleet {spec.stack}: EventBridge Scheduler opens and closes the API's rule",
        for_this_account_only=True)
    iam.RolePolicy(fleet.child("switch-api"), role=role.id, policy=api_rule.arn.apply(lambda arn: json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "elasticloadbalancing:ModifyRule",
                                                "Resource": arn}]})), opts=fleet.opts)
    closed = [{"Type": "forward", "TargetGroupArn": woken_by.arn}] if woken_by else [{"Type": "fixed-response", "FixedResponseConfig": {
        "StatusCode": "503", "ContentType": "application/json",
        "MessageBody": json.dumps(closed_answer(spec.stack, hours))}}]

    def switch(name: str, moment: Moment, actions) -> None:
        scheduler.Schedule(
            fleet.short_child(name, SCHEDULE_NAME_MAX - AUTONAME_SUFFIX),
            description=f"vllm-fleet {spec.stack}: {name.split('-')[0]} the API, {hours.describe()}",
            schedule_expression=scheduler_cron(moment), schedule_expression_timezone=hours.timezone,
            flexible_time_window=scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=scheduler.ScheduleTargetArgs(
                arn=MODIFY_RULE_TARGET, role_arn=role.arn,
                input=pulumi.Output.json_dumps({"RuleArn": api_rule.arn, "Actions": actions})),
            opts=fleet.opts)

    for index, moment in enumerate(hours.closings(0)):
        switch(f"close-api-{index}", moment, closed)
    for index, moment in enumerate(hours.openings(0)):
        switch(f"open-api-{index}", moment, [{"Type": "forward", "TargetGroupArn": target_group.arn}])

def issued_certificate(fleet: FleetComponent, spec: FleetSpec):
    certificate = acm.Certificate(fleet.child("tls"), domain_name=spec.domain, validation_method="DNS",
                                  opts=fleet.opts)
    option = certificate.domain_validation_options[0]
    record = route53.Record(fleet.child("tls-validation"), zone_id=spec.dns_zone, name=option.resource_record_name,
                            type=option.resource_record_type, records=[option.resource_record_value], ttl=300,
                            opts=fleet.opts)
    return acm.CertificateValidation(fleet.child("tls"), certificate_arn=certificate.arn,
                                     validation_record_fqdns=[record.fqdn], opts=fleet.opts).certificate_arn




# --- the model of this edge (components/edge_model.py) ----------------------------------------------------
def _matches(path_pattern: dict[str, Any], path: str) -> bool:
    """A path-pattern condition of regular expressions: one of them matches the path. AWS does not say whether it
    must match the whole path: a search, which the fleet's anchored expressions make the same."""
    if set(path_pattern) != {"regexValues"}:
        raise ValueError(f"no model of the path-pattern condition {path_pattern}")
    return any(re.search(value, path) for value in path_pattern["regexValues"])


def _action(action: dict[str, Any]) -> int | None:
    if action["type"] == "forward":
        return None
    if action["type"] == "fixed-response":
        return int(action["fixedResponse"]["statusCode"])
    raise ValueError(f"no model of the listener action {action['type']!r}")


def edge_answers(resources: Resources, method: str, path: str) -> dict[str, int | None]:
    """The listener's rules in priority order, then its default action (Elastic Load Balancing: "Rules are evaluated
    in priority order, from the lowest value to the highest value. The default rule is evaluated last"); a
    path-pattern condition matches the path without the query string, case-sensitively. AWS does not say whether
    that path is decoded or normalised first: every reading of it."""
    [listener] = of_type(resources, LISTENER)
    rules = sorted(of_type(resources, LISTENER_RULE), key=lambda rule: rule["priority"])

    def answer(reading: str) -> int | None:
        for rule in rules:
            conditions = rule["conditions"]
            if any(set(condition) - {"pathPattern"} for condition in conditions):
                raise ValueError(f"no model of the listener rule conditions {conditions}")
            if all(_matches(condition["pathPattern"], reading) for condition in conditions):
                [action] = rule["actions"]
                return _action(action)
        [default] = listener["defaultActions"]
        return _action(default)

    return {reading: answer(reading) for reading in path_readings(path)}


edge_answer = strictest_of(edge_answers)
