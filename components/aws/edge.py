"""The edge of an AWS stack: the Application Load Balancer, its target group with the health check, the listener
(HTTPS with the stack's or an issued ACM certificate) and what it refuses."""

from __future__ import annotations

from pulumi_aws import acm, lb, route53

from components.base import FleetComponent
from fleet import serving
from fleet.spec import FleetSpec

from .options import AwsOptions

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# An idle connection is cut after this long; streamed tokens keep it busy, a long non-streamed answer does not.
LB_IDLE_TIMEOUT_SECONDS = 1200
# Let in-flight generations finish before an instance leaves the target group (scale-in, rolling update).
DEREGISTRATION_DELAY_SECONDS = 300


def load_balancer(fleet: FleetComponent, spec: FleetSpec, options: AwsOptions, vpc_id, subnets, lb_sg):
    alb = lb.LoadBalancer(fleet.child("alb")[:32], load_balancer_type="application", internal=options.internal,
                          subnets=subnets, security_groups=[lb_sg.id], idle_timeout=LB_IDLE_TIMEOUT_SECONDS,
                          drop_invalid_header_fields=True, opts=fleet.opts)
    target_group = lb.TargetGroup(
        fleet.child("vllm")[:32], vpc_id=vpc_id, port=serving.SERVE_PORT, protocol="HTTP", target_type="instance",
        deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
        # Generations vary from milliseconds to minutes: send each request to the least busy VM.
        load_balancing_algorithm_type="least_outstanding_requests",
        health_check=lb.TargetGroupHealthCheckArgs(
            enabled=True, protocol="HTTP", port=str(serving.SERVE_PORT), path=serving.HEALTH_PATH,
            matcher="200", interval=15, timeout=5, healthy_threshold=2, unhealthy_threshold=3),
        opts=fleet.opts)
    return alb, target_group

def listeners(fleet: FleetComponent, spec: FleetSpec, alb, target_group) -> str:
    forward = [lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)]
    if not (spec.certificate or spec.dns_zone):
        fleet.warn_plain_http(spec, "Set domain and certificate (or dnsZone) for HTTPS.")
        listener = lb.Listener(fleet.child("http"), load_balancer_arn=alb.arn, port=80, protocol="HTTP",
                               default_actions=forward, opts=fleet.opts)
        hide_internal_paths(fleet, listener)
        return "http"
    certificate_arn = spec.certificate or issued_certificate(fleet, spec)
    listener = lb.Listener(fleet.child("https"), load_balancer_arn=alb.arn, port=443, protocol="HTTPS",
                           ssl_policy=TLS_POLICY, certificate_arn=certificate_arn, default_actions=forward,
                           opts=fleet.opts)
    hide_internal_paths(fleet, listener)
    if spec.dns_zone:
        route53.Record(fleet.child("endpoint"), zone_id=spec.dns_zone, name=spec.domain, type="A",
                       aliases=[route53.RecordAliasArgs(name=alb.dns_name, zone_id=alb.zone_id,
                                                        evaluate_target_health=True)], opts=fleet.opts)
    else:
        fleet.warn(f"{spec.stack}: point {spec.domain} (CNAME) at the load balancer's DNS name to use the endpoint.")
    return "https"

def hide_internal_paths(fleet: FleetComponent, listener) -> None:
    lb.ListenerRule(fleet.child("hide-internal"), listener_arn=listener.arn, priority=1,
                    conditions=[lb.ListenerRuleConditionArgs(path_pattern=lb.ListenerRuleConditionPathPatternArgs(
                        values=[p for prefix in serving.INTERNAL_PATH_PREFIXES for p in (prefix, f"{prefix}/*")]))],
                    actions=[lb.ListenerRuleActionArgs(type="fixed-response", fixed_response=lb.ListenerRuleActionFixedResponseArgs(
                        content_type="text/plain", status_code="404", message_body="not found"))],
                    opts=fleet.opts)

def issued_certificate(fleet: FleetComponent, spec: FleetSpec):
    certificate = acm.Certificate(fleet.child("tls"), domain_name=spec.domain, validation_method="DNS",
                                  opts=fleet.opts)
    option = certificate.domain_validation_options[0]
    record = route53.Record(fleet.child("tls-validation"), zone_id=spec.dns_zone, name=option.resource_record_name,
                            type=option.resource_record_type, records=[option.resource_record_value], ttl=300,
                            opts=fleet.opts)
    return acm.CertificateValidation(fleet.child("tls"), certificate_arn=certificate.arn,
                                     validation_record_fqdns=[record.fqdn], opts=fleet.opts).certificate_arn


