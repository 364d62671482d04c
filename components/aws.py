"""AWS: GPU VMs in an Auto Scaling group behind an Application Load Balancer.

Only AWS specifics live here; the spec, sizing, vLLM arguments and user-data come from fleet/.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

import pulumi
import pulumi_aws
from pulumi_aws import acm, autoscaling, ec2, iam, lb, route53, secretsmanager, vpc

from components.base import FleetComponent
from fleet import serving
from fleet.bootstrap import render_user_data
from fleet.errors import ConfigError
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

# Deep Learning Base OSS Nvidia Driver GPU AMI: NVIDIA driver, CUDA and cloud-init on Ubuntu 22.04.
DLAMI_OWNER = "898082745236"
DLAMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
SSM_CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# An idle connection is cut after this long; streamed tokens keep it busy, a long non-streamed answer does not.
LB_IDLE_TIMEOUT_SECONDS = 1200
# Let in-flight generations finish before an instance leaves the target group (scale-in, rolling update).
DEREGISTRATION_DELAY_SECONDS = 300
ROOT_VOLUME_GB = 150  # the DLAMI's own ~75 GB plus the vLLM venv
USER_DATA = ("aws:ec2/launchTemplate:LaunchTemplate", "userData", "base64")

_OPTIONS = {
    "vpcId": "an existing VPC (vpc-...) instead of a new one; needs publicSubnetIds and privateSubnetIds",
    "publicSubnetIds": "subnets of vpcId for the load balancer (at least two AZs)",
    "privateSubnetIds": "subnets of vpcId for the GPU instances, with a route to the internet (NAT)",
    "vpcCidr": "CIDR of a new VPC (default 10.80.0.0/16)",
    "azCount": "availability zones of a new VPC, 2-6 (default 3: more AZs, more GPU capacity)",
    "internal": "true for a load balancer reachable only inside the VPC (default false)",
    "amiId": "an AMI instead of the latest Deep Learning Base OSS Nvidia Driver GPU AMI",
}


@dataclass(frozen=True)
class AwsOptions:
    vpc_id: str | None
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]
    vpc_cidr: str
    az_count: int
    internal: bool
    ami_id: str | None


def _ids(key: str, value: Any, prefix: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) < 2 or not all(
            isinstance(v, str) and re.match(rf"^{prefix}-[0-9a-f]{{8,17}}$", v) for v in value):
        raise ConfigError(f"aws.{key}", value, f"must list at least two {prefix}-... ids in different AZs")
    return tuple(value)


def parse_options(spec: FleetSpec, sizing: Sizing) -> AwsOptions:
    options = dict(spec.cloud_options)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"aws.{unknown[0]}", options[unknown[0]], f"is not an AWS option; known: {', '.join(_OPTIONS)}")
    vpc_id = options.get("vpcId")
    public = private = ()
    if vpc_id is not None:
        if not isinstance(vpc_id, str) or not re.match(r"^vpc-[0-9a-f]{8,17}$", vpc_id):
            raise ConfigError("aws.vpcId", vpc_id, "must be a VPC id such as vpc-0123456789abcdef0")
        public = _ids("publicSubnetIds", options.get("publicSubnetIds"), "subnet")
        private = _ids("privateSubnetIds", options.get("privateSubnetIds"), "subnet")
    elif "publicSubnetIds" in options or "privateSubnetIds" in options:
        raise ConfigError("aws.vpcId", None, "subnet ids need the vpcId they belong to")
    cidr = options.get("vpcCidr", "10.80.0.0/16")
    try:
        network = ipaddress.ip_network(str(cidr))
        if not 16 <= network.prefixlen <= 20:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError("aws.vpcCidr", cidr, "must be a network from /16 to /20, e.g. 10.80.0.0/16") from None
    az_count = options.get("azCount", 3)
    if not isinstance(az_count, int) or isinstance(az_count, bool) or not 2 <= az_count <= 6:
        raise ConfigError("aws.azCount", az_count, "must be a whole number from 2 to 6")
    internal = options.get("internal", False)
    if not isinstance(internal, bool):
        raise ConfigError("aws.internal", internal, "must be true or false")
    ami_id = options.get("amiId")
    if ami_id is not None and not (isinstance(ami_id, str) and re.match(r"^ami-[0-9a-f]{8,17}$", ami_id)):
        raise ConfigError("aws.amiId", ami_id, "must be an AMI id such as ami-0123456789abcdef0")
    if spec.certificate is not None and not re.match(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$",
                                                     spec.certificate):
        raise ConfigError("certificate", spec.certificate,
                          "on AWS must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)")
    if spec.certificate and spec.certificate.split(":")[3] != spec.region:
        raise ConfigError("certificate", spec.certificate, f"must be an ACM certificate in {spec.region}, the load balancer's region")
    if spec.domain and not spec.certificate and not spec.dns_zone:
        raise ConfigError("certificate", None,
                          f"HTTPS for {spec.domain} needs an ACM certificate ARN, or dnsZone (a Route 53 hosted zone "
                          f"id) so that the stack can issue and validate one")
    if spec.dns_zone is not None and not re.match(r"^Z[A-Z0-9]{4,31}$", spec.dns_zone):
        raise ConfigError("dnsZone", spec.dns_zone, "on AWS must be a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ")
    return AwsOptions(vpc_id, public, private, str(cidr), az_count, internal, ami_id)


class Fleet(FleetComponent):
    def __init__(self, name: str, spec: FleetSpec, sizing: Sizing, options: AwsOptions,
                 secrets: Mapping[str, pulumi.Output[str]]):
        super().__init__("aws", name)
        tags = spec.resource_tags
        provider = pulumi_aws.Provider(f"{name}-aws", region=spec.region,
                                       default_tags=pulumi_aws.ProviderDefaultTagsArgs(tags=tags),
                                       opts=pulumi.ResourceOptions(parent=self))
        self._opts = pulumi.ResourceOptions(parent=self, provider=provider)
        self._invoke = pulumi.InvokeOptions(provider=provider)

        vpc_id, public_subnets, private_subnets = self._network(spec, options)
        lb_sg, instance_sg = self._security_groups(spec, vpc_id)
        secret_arns = self._secrets(spec, secrets)
        profile = self._instance_profile(spec, secret_arns)
        template = self._launch_template(spec, sizing, options, profile, instance_sg, secret_arns)
        alb, target_group = self._load_balancer(spec, options, vpc_id, public_subnets, lb_sg)
        group = self._auto_scaling_group(spec, sizing, template, target_group, private_subnets, tags)
        self._autoscaling_policy(spec, group, alb, target_group)
        scheme = self._listeners(spec, alb, target_group)

        self._serve_at(scheme, spec.domain or alb.dns_name)

    # --- network -----------------------------------------------------------------------------------------
    def _network(self, spec: FleetSpec, options: AwsOptions):
        if options.vpc_id:
            return options.vpc_id, list(options.public_subnet_ids), list(options.private_subnet_ids)
        zones = pulumi_aws.get_availability_zones_output(
            state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=self._invoke).names
        network = ipaddress.ip_network(options.vpc_cidr)
        # /20s out of the VPC: public ones first, then private ones (large: one IP per VM, ENIs, LB nodes).
        blocks = list(network.subnets(new_prefix=min(network.prefixlen + 4, 24)))
        the_vpc = ec2.Vpc(self._child("vpc"), cidr_block=options.vpc_cidr, enable_dns_hostnames=True,
                          enable_dns_support=True, tags={"Name": self._child("vpc")}, opts=self._opts)
        gateway = ec2.InternetGateway(self._child("igw"), vpc_id=the_vpc.id, opts=self._opts)
        public_routes = ec2.RouteTable(self._child("public"), vpc_id=the_vpc.id, routes=[
            ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)], opts=self._opts)
        public, private = [], []
        for index in range(options.az_count):
            zone = zones.apply(lambda names, i=index: names[i % len(names)])
            subnet = ec2.Subnet(self._child(f"public-{index}"), vpc_id=the_vpc.id, availability_zone=zone,
                                cidr_block=str(blocks[index]), map_public_ip_on_launch=False,
                                tags={"Name": self._child(f"public-{index}")}, opts=self._opts)
            ec2.RouteTableAssociation(self._child(f"public-{index}"), subnet_id=subnet.id,
                                      route_table_id=public_routes.id, opts=self._opts)
            public.append(subnet)
        # One NAT gateway: the instances only need it for installs and downloads at boot.
        nat_ip = ec2.Eip(self._child("nat"), domain="vpc", opts=self._opts)
        nat = ec2.NatGateway(self._child("nat"), subnet_id=public[0].id, allocation_id=nat_ip.id,
                             opts=self._opts.merge(pulumi.ResourceOptions(depends_on=[gateway])))
        private_routes = ec2.RouteTable(self._child("private"), vpc_id=the_vpc.id, routes=[
            ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)], opts=self._opts)
        for index in range(options.az_count):
            zone = zones.apply(lambda names, i=index: names[i % len(names)])
            subnet = ec2.Subnet(self._child(f"private-{index}"), vpc_id=the_vpc.id, availability_zone=zone,
                                cidr_block=str(blocks[options.az_count + index]), map_public_ip_on_launch=False,
                                tags={"Name": self._child(f"private-{index}")}, opts=self._opts)
            ec2.RouteTableAssociation(self._child(f"private-{index}"), subnet_id=subnet.id,
                                      route_table_id=private_routes.id, opts=self._opts)
            private.append(subnet)
        return the_vpc.id, [s.id for s in public], [s.id for s in private]

    def _security_groups(self, spec: FleetSpec, vpc_id):
        lb_sg = ec2.SecurityGroup(self._child("lb"), vpc_id=vpc_id,
                                  description=f"vllm-fleet {spec.stack}: load balancer, from allowedCidrs",
                                  opts=self._opts)
        instance_sg = ec2.SecurityGroup(self._child("instances"), vpc_id=vpc_id,
                                        description=f"vllm-fleet {spec.stack}: vLLM on {serving.SERVE_PORT} from the load balancer only; no SSH (use SSM)",
                                        opts=self._opts)
        port = 443 if spec.certificate or spec.dns_zone else 80
        for index, cidr in enumerate(spec.allowed_cidrs):
            vpc.SecurityGroupIngressRule(self._child(f"lb-in-{index}"), security_group_id=lb_sg.id,
                                         cidr_ipv4=cidr, ip_protocol="tcp", from_port=port, to_port=port,
                                         description=f"clients on {port}", opts=self._opts)
        vpc.SecurityGroupEgressRule(self._child("lb-to-instances"), security_group_id=lb_sg.id,
                                    referenced_security_group_id=instance_sg.id, ip_protocol="tcp",
                                    from_port=serving.SERVE_PORT, to_port=serving.SERVE_PORT,
                                    description="to vLLM and its health check", opts=self._opts)
        vpc.SecurityGroupIngressRule(self._child("instances-from-lb"), security_group_id=instance_sg.id,
                                     referenced_security_group_id=lb_sg.id, ip_protocol="tcp",
                                     from_port=serving.SERVE_PORT, to_port=serving.SERVE_PORT,
                                     description="vLLM from the load balancer", opts=self._opts)
        # Outbound HTTPS for the driver/vLLM install, the weights, Secrets Manager and SSM; DNS goes to the
        # VPC resolver, which security groups do not filter.
        vpc.SecurityGroupEgressRule(self._child("instances-https-out"), security_group_id=instance_sg.id,
                                    cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=443, to_port=443,
                                    description="HTTPS: packages, weights, AWS APIs", opts=self._opts)
        vpc.SecurityGroupEgressRule(self._child("instances-http-out"), security_group_id=instance_sg.id,
                                    cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=80, to_port=80,
                                    description="HTTP: Ubuntu apt mirrors", opts=self._opts)
        return lb_sg, instance_sg

    # --- identity and secrets ----------------------------------------------------------------------------
    def _secrets(self, spec: FleetSpec, secrets: Mapping[str, pulumi.Output[str]]) -> dict[str, pulumi.Output[str]]:
        arns = {}
        for key, value in secrets.items():
            secret = secretsmanager.Secret(self._child(key), name_prefix=f"vllm-fleet/{spec.stack}/{key}-",
                                           description=f"vllm-fleet {spec.stack}: {key}, read by the VMs at boot",
                                           recovery_window_in_days=7, opts=self._opts)
            secretsmanager.SecretVersion(self._child(key), secret_id=secret.id, secret_string=value,
                                         opts=self._opts)
            arns[key] = secret.arn
        return arns

    def _instance_profile(self, spec: FleetSpec, secret_arns: Mapping[str, pulumi.Output[str]]):
        role = iam.Role(self._child("instance"), description=f"vllm-fleet {spec.stack} GPU instances",
                        assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                            "Effect": "Allow", "Action": "sts:AssumeRole",
                            "Principal": {"Service": "ec2.amazonaws.com"}}]}),
                        opts=self._opts)
        iam.RolePolicyAttachment(self._child("ssm"), role=role.name, policy_arn=SSM_CORE_POLICY, opts=self._opts)

        def policy(arns: list[str]) -> str:
            statements = [{"Sid": "ReadThisStacksSecrets", "Effect": "Allow",
                           "Action": "secretsmanager:GetSecretValue", "Resource": sorted(arns)}]
            if spec.model_is_bucket:
                bucket, _, prefix = spec.model[len("s3://"):].partition("/")
                statements += [
                    {"Sid": "ListModelPrefix", "Effect": "Allow", "Action": "s3:ListBucket",
                     "Resource": f"arn:aws:s3:::{bucket}",
                     "Condition": {"StringLike": {"s3:prefix": [f"{prefix.rstrip('/')}/*" if prefix else "*"]}}},
                    {"Sid": "ReadModel", "Effect": "Allow", "Action": "s3:GetObject",
                     "Resource": f"arn:aws:s3:::{bucket}/{prefix.rstrip('/') + '/' if prefix else ''}*"},
                ]
            return json.dumps({"Version": "2012-10-17", "Statement": statements})

        iam.RolePolicy(self._child("read-secrets"), role=role.id,
                       policy=pulumi.Output.all(*secret_arns.values()).apply(policy), opts=self._opts)
        return iam.InstanceProfile(self._child("instance"), role=role.name, opts=self._opts)

    # --- instances ---------------------------------------------------------------------------------------
    def _launch_template(self, spec, sizing: Sizing, options: AwsOptions, profile, instance_sg, secret_arns):
        if options.ami_id:
            image_id, root_device = pulumi.Output.from_input(options.ami_id), pulumi.Output.from_input("/dev/sda1")
        else:
            ami = ec2.get_ami_output(most_recent=True, owners=[DLAMI_OWNER], filters=[
                {"name": "name", "values": [DLAMI_NAME]}, {"name": "architecture", "values": ["x86_64"]},
                {"name": "state", "values": ["available"]}], opts=self._invoke)
            image_id, root_device = ami.id, ami.root_device_name
        user_data = pulumi.Output.all(**secret_arns).apply(
            lambda arns: base64.b64encode(render_user_data(spec, sizing, arns).encode()).decode())

        def volume(device, size: int, throughput: int, iops: int):
            return ec2.LaunchTemplateBlockDeviceMappingArgs(device_name=device, ebs=ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                volume_type="gp3", volume_size=size, encrypted="true", delete_on_termination="true",
                throughput=throughput, iops=iops))

        return ec2.LaunchTemplate(
            self._child("gpu"),
            description=f"vllm-fleet {spec.stack}: {spec.served_model_name} on {sizing.instance.name}",
            image_id=image_id,
            instance_type=sizing.instance.name,
            iam_instance_profile=ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            vpc_security_group_ids=[instance_sg.id],
            # IMDSv2 only, one hop: credentials stay on the host, out of reach of SSRF-style requests.
            metadata_options=ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1),
            block_device_mappings=[
                volume(root_device, ROOT_VOLUME_GB, 250, 3000),
                # The weights cache: fast gp3 so that a new VM loads the weights quickly.
                volume("/dev/sdf", sizing.data_disk_gb, 1000, 8000),
            ],
            user_data=user_data,
            update_default_version=True,
            tag_specifications=[
                ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags={
                    "Name": self._child("gpu"), **spec.resource_tags})
                for kind in ("instance", "volume")],
            opts=self._opts,
        )

    def _auto_scaling_group(self, spec, sizing: Sizing, template, target_group, subnets, tags):
        template_spec = autoscaling.GroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str))
        mixed = None
        if spec.spot:
            # Spot across every catalog type with the same GPUs (same TP, same bootstrap): more pools, fewer
            # interruptions; on-demand for the first onDemandBase VMs.
            from fleet import catalog

            alternatives = sorted(it.name for it in catalog.cloud("aws").instance_types.values()
                                  if it.gpu == sizing.instance.gpu and it.gpu_count == sizing.instance.gpu_count)
            mixed = autoscaling.GroupMixedInstancesPolicyArgs(
                instances_distribution=autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                    on_demand_base_capacity=spec.on_demand_base,
                    on_demand_percentage_above_base_capacity=0,
                    spot_allocation_strategy="price-capacity-optimized"),
                launch_template=autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                    launch_template_specification=autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                        launch_template_id=template.id, version=template.latest_version.apply(str)),
                    overrides=[autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(instance_type=t)
                               for t in alternatives]))
        grace = sizing.startup_grace_seconds
        return autoscaling.Group(
            self._child("gpu"),
            min_size=spec.replicas.min,
            max_size=spec.replicas.max,
            desired_capacity=spec.replicas.desired,
            vpc_zone_identifiers=subnets,
            launch_template=None if mixed else template_spec,
            mixed_instances_policy=mixed,
            capacity_rebalance=spec.spot,
            target_group_arns=[target_group.arn],
            health_check_type="ELB",
            # Long enough to install vLLM and download and load the weights before health checks count.
            health_check_grace_period=grace,
            default_instance_warmup=grace,
            # Replace unhealthy instances by launching first: serving capacity never drops.
            instance_maintenance_policy=autoscaling.GroupInstanceMaintenancePolicyArgs(
                min_healthy_percentage=100, max_healthy_percentage=200),
            instance_refresh=autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=100, max_healthy_percentage=200, instance_warmup=str(grace),
                    skip_matching=True, auto_rollback=True)),
            # `pulumi up` returns once the group exists; VMs become healthy minutes later (weights download).
            wait_for_capacity_timeout="0",
            tags=[autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=False) for k, v in tags.items()],
            opts=self._opts,
        )

    def _autoscaling_policy(self, spec, group, alb, target_group):
        if spec.replicas.min == spec.replicas.max:
            return
        autoscaling.Policy(
            self._child("requests-per-target"), autoscaling_group_name=group.name,
            policy_type="TargetTrackingScaling",
            target_tracking_configuration=autoscaling.PolicyTargetTrackingConfigurationArgs(
                predefined_metric_specification=autoscaling.PolicyTargetTrackingConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type="ALBRequestCountPerTarget",
                    resource_label=pulumi.Output.concat(alb.arn_suffix, "/", target_group.arn_suffix)),
                target_value=spec.replicas.target_requests_per_minute),
            opts=self._opts)

    # --- load balancer -----------------------------------------------------------------------------------
    def _load_balancer(self, spec, options: AwsOptions, vpc_id, subnets, lb_sg):
        alb = lb.LoadBalancer(self._child("alb")[:32], load_balancer_type="application", internal=options.internal,
                              subnets=subnets, security_groups=[lb_sg.id], idle_timeout=LB_IDLE_TIMEOUT_SECONDS,
                              drop_invalid_header_fields=True, opts=self._opts)
        target_group = lb.TargetGroup(
            self._child("vllm")[:32], vpc_id=vpc_id, port=serving.SERVE_PORT, protocol="HTTP", target_type="instance",
            deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
            # Generations vary from milliseconds to minutes: send each request to the least busy VM.
            load_balancing_algorithm_type="least_outstanding_requests",
            health_check=lb.TargetGroupHealthCheckArgs(
                enabled=True, protocol="HTTP", port=str(serving.SERVE_PORT), path=serving.HEALTH_PATH,
                matcher="200", interval=15, timeout=5, healthy_threshold=2, unhealthy_threshold=3),
            opts=self._opts)
        return alb, target_group

    def _listeners(self, spec: FleetSpec, alb, target_group) -> str:
        forward = [lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)]
        if not (spec.certificate or spec.dns_zone):
            self._warn_plain_http(spec, "Set domain and certificate (or dnsZone) for HTTPS.")
            listener = lb.Listener(self._child("http"), load_balancer_arn=alb.arn, port=80, protocol="HTTP",
                                   default_actions=forward, opts=self._opts)
            self._hide_internal_paths(listener)
            return "http"
        certificate_arn = spec.certificate or self._issued_certificate(spec)
        listener = lb.Listener(self._child("https"), load_balancer_arn=alb.arn, port=443, protocol="HTTPS",
                               ssl_policy=TLS_POLICY, certificate_arn=certificate_arn, default_actions=forward,
                               opts=self._opts)
        self._hide_internal_paths(listener)
        if spec.dns_zone:
            route53.Record(self._child("endpoint"), zone_id=spec.dns_zone, name=spec.domain, type="A",
                           aliases=[route53.RecordAliasArgs(name=alb.dns_name, zone_id=alb.zone_id,
                                                            evaluate_target_health=True)], opts=self._opts)
        else:
            self._warn(f"{spec.stack}: point {spec.domain} (CNAME) at the load balancer's DNS name to use the endpoint.")
        return "https"

    def _hide_internal_paths(self, listener) -> None:
        lb.ListenerRule(self._child("hide-internal"), listener_arn=listener.arn, priority=1,
                        conditions=[lb.ListenerRuleConditionArgs(path_pattern=lb.ListenerRuleConditionPathPatternArgs(
                            values=[p for prefix in serving.INTERNAL_PATH_PREFIXES for p in (prefix, f"{prefix}/*")]))],
                        actions=[lb.ListenerRuleActionArgs(type="fixed-response", fixed_response=lb.ListenerRuleActionFixedResponseArgs(
                            content_type="text/plain", status_code="404", message_body="not found"))],
                        opts=self._opts)

    def _issued_certificate(self, spec: FleetSpec):
        certificate = acm.Certificate(self._child("tls"), domain_name=spec.domain, validation_method="DNS",
                                      opts=self._opts)
        option = certificate.domain_validation_options[0]
        record = route53.Record(self._child("tls-validation"), zone_id=spec.dns_zone, name=option.resource_record_name,
                                type=option.resource_record_type, records=[option.resource_record_value], ttl=300,
                                opts=self._opts)
        return acm.CertificateValidation(self._child("tls"), certificate_arn=certificate.arn,
                                         validation_record_fqdns=[record.fqdn], opts=self._opts).certificate_arn


# --- offline plan: what AWS would answer -----------------------------------------------------------------
def offline_invoke(token: str, args: Mapping[str, Any]) -> dict[str, Any]:
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {"names": ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"],
                "zoneIds": ["use1-az1", "use1-az2", "use1-az4", "use1-az6"], "id": "us-east-1"}
    if token == "aws:ec2/getAmi:getAmi":
        return {"id": "ami-0fleet0offline0plan", "name": DLAMI_NAME.replace("*", "20261101"),
                "rootDeviceName": "/dev/sda1", "architecture": "x86_64"}
    raise NotImplementedError(f"the offline plan has no answer for {token}")


def offline_state(type_: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    service = type_.split(":")[1].split("/")[0]
    state: dict[str, Any] = {"arn": f"arn:aws:{service}:us-east-1:123456789012:{name}", "name": inputs.get("name", name)}
    if type_ == "aws:lb/loadBalancer:LoadBalancer":
        state.update(dnsName=f"{name}-1234567890.us-east-1.elb.amazonaws.com", zoneId="Z35SXDOTRQ7X7K",
                     arnSuffix=f"app/{name}/0123456789abcdef")
    if type_ == "aws:lb/targetGroup:TargetGroup":
        state["arnSuffix"] = f"targetgroup/{name}/0123456789abcdef"
    if type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        state["latestVersion"] = 1
    if type_ == "aws:acm/certificate:Certificate":
        state["domainValidationOptions"] = [{"domainName": inputs["domainName"],
                                             "resourceRecordName": f"_x.{inputs['domainName']}.",
                                             "resourceRecordType": "CNAME", "resourceRecordValue": "_y.acm-validations.aws."}]
    if type_ == "aws:route53/record:Record":
        state["fqdn"] = inputs["name"]
    return state
