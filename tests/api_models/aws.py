"""AWS: botocore's service models (botocore/data/<service>/<version>/service-2.json), the data the AWS SDKs and
CLI are generated from. A root is an operation ("elbv2:CreateTargetGroup"): its input shape."""

from __future__ import annotations

from functools import cache
from typing import Any

from .core import Attribute, Calls, Field, Model, Pairs, ProviderOnly, Resource, Sent, Spread

SERVICES = {"ec2", "elbv2", "autoscaling", "iam", "secretsmanager", "scheduler", "acm", "route53", "logs",
            "cloudwatch", "sns", "lambda", "events", "wafv2"}
KINDS = {"structure": "structure", "list": "list", "map": "map", "string": "string", "integer": "integer",
         "long": "integer", "double": "number", "float": "number", "boolean": "boolean", "timestamp": "string",
         "blob": "string"}


@cache
def _service(name: str) -> dict[str, Any]:
    from botocore.loaders import Loader

    return Loader().load_service_model(name, "service-2")


class AwsModel(Model):
    def root(self, api: str, root: str) -> Field:
        assert api in SERVICES, f"no botocore model loaded for {api}"
        service = _service(api)
        operation = service["operations"][root]
        return self._shape(service, operation["input"]["shape"], f"{api} {root}")

    def _shape(self, service: dict[str, Any], name: str, where: str) -> Field:
        shape = service["shapes"][name]
        kind = KINDS[shape["type"]]
        lengths = {"min_length": shape.get("min"), "max_length": shape.get("max")}
        if kind == "structure":
            members = shape.get("members", {})
            return Field(where, kind, required=frozenset(shape.get("required", ())), members=lambda: {
                m: self._shape(service, spec["shape"], f"{where}.{m}") for m, spec in members.items()})
        if kind in ("list", "map"):
            item = shape["member" if kind == "list" else "value"]["shape"]
            return Field(where, kind, item=lambda: self._shape(service, item, f"{where}[]"), **lengths)
        if kind == "string":
            return Field(where, kind, enum=tuple(shape["enum"]) if "enum" in shape else None,
                         pattern=shape.get("pattern"), **lengths)
        if kind in ("integer", "number"):
            return Field(where, kind, minimum=shape.get("min"), maximum=shape.get("max"))
        return Field(where, kind)


# --- where the AWS provider sends each input (terraform-provider-aws's resources, field by field) ---------------
def _tags(items: str) -> Pairs:
    return Pairs(f"{items}.Key", f"{items}.Value")


PROVIDER_DEFAULT_TAGS = "the provider merges them into each resource's own tags (checked there)"
ELB_ATTRIBUTES = "elbv2:ModifyLoadBalancerAttributes.Attributes[]"
TG_ATTRIBUTES = "elbv2:ModifyTargetGroupAttributes.Attributes[]"
RULE_PERMISSIONS = {  # aws_vpc_security_group_{ingress,egress}_rule: one IpPermission of Authorize*
    "cidrIpv4": "IpPermissions[].IpRanges[].CidrIp", "description": "IpPermissions[].IpRanges[].Description",
    "fromPort": "IpPermissions[].FromPort", "toPort": "IpPermissions[].ToPort",
    "ipProtocol": "IpPermissions[].IpProtocol", "referencedSecurityGroupId": "IpPermissions[].UserIdGroupPairs[].GroupId",
}

RESOURCES: dict[str, Resource] = {
    "aws:ec2/vpc:Vpc": Resource("ec2:CreateVpc", {
        "enableDnsHostnames": "ec2:ModifyVpcAttribute.EnableDnsHostnames.Value",
        "enableDnsSupport": "ec2:ModifyVpcAttribute.EnableDnsSupport.Value",
        "tags": _tags("TagSpecifications[].Tags[]")},
        supplied={"ec2:ModifyVpcAttribute.VpcId": "the id CreateVpc returned"}),
    "aws:ec2/subnet:Subnet": Resource("ec2:CreateSubnet", {
        "mapPublicIpOnLaunch": "ec2:ModifySubnetAttribute.MapPublicIpOnLaunch.Value",
        "tags": _tags("TagSpecifications[].Tags[]")},
        supplied={"ec2:ModifySubnetAttribute.SubnetId": "the id CreateSubnet returned"}),
    "aws:ec2/internetGateway:InternetGateway": Resource("ec2:CreateInternetGateway", {
        "vpcId": "ec2:AttachInternetGateway.VpcId"},
        supplied={"ec2:AttachInternetGateway.InternetGatewayId": "the id CreateInternetGateway returned"}),
    "aws:ec2/eip:Eip": Resource("ec2:AllocateAddress"),
    "aws:ec2/natGateway:NatGateway": Resource("ec2:CreateNatGateway"),
    "aws:ec2/routeTable:RouteTable": Resource("ec2:CreateRouteTable", {
        "routes": Calls("ec2:CreateRoute"), "routes[].cidrBlock": "ec2:CreateRoute.DestinationCidrBlock"},
        supplied={"ec2:CreateRoute.RouteTableId": "the id CreateRouteTable returned"}),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": Resource("ec2:AssociateRouteTable"),
    "aws:ec2/securityGroup:SecurityGroup": Resource("ec2:CreateSecurityGroup", name="GroupName"),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": Resource(
        "ec2:AuthorizeSecurityGroupIngress", {**RULE_PERMISSIONS, "securityGroupId": "GroupId"}),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": Resource(
        "ec2:AuthorizeSecurityGroupEgress", {**RULE_PERMISSIONS, "securityGroupId": "GroupId"}),
    "aws:ec2/launchTemplate:LaunchTemplate": Resource("ec2:CreateLaunchTemplate.LaunchTemplateData", {
        "description": "ec2:CreateLaunchTemplate.VersionDescription",
        "vpcSecurityGroupIds": "SecurityGroupIds",
        "tagSpecifications[].tags": _tags("TagSpecifications[].Tags[]"),
        "updateDefaultVersion": ProviderOnly("the provider calls ModifyLaunchTemplate with the new version as "
                                             "DefaultVersion after each change")},
        name="ec2:CreateLaunchTemplate.LaunchTemplateName"),
    "aws:iam/role:Role": Resource("iam:CreateRole", {"assumeRolePolicy": "AssumeRolePolicyDocument"},
                                  name="RoleName"),
    "aws:iam/rolePolicy:RolePolicy": Resource("iam:PutRolePolicy", {"policy": "PolicyDocument", "role": "RoleName"},
                                              name="PolicyName"),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": Resource("iam:AttachRolePolicy", {"role": "RoleName"}),
    "aws:iam/instanceProfile:InstanceProfile": Resource("iam:CreateInstanceProfile", {
        "role": "iam:AddRoleToInstanceProfile.RoleName"}, name="InstanceProfileName",
        supplied={"iam:AddRoleToInstanceProfile.InstanceProfileName": "the profile CreateInstanceProfile made"}),
    "aws:lb/loadBalancer:LoadBalancer": Resource("elbv2:CreateLoadBalancer", {
        "internal": Sent("Scheme", lambda internal: "internal" if internal else "internet-facing"),
        "loadBalancerType": "Type",
        "idleTimeout": Attribute(ELB_ATTRIBUTES, "Key", "idle_timeout.timeout_seconds"),
        "dropInvalidHeaderFields": Attribute(ELB_ATTRIBUTES, "Key", "routing.http.drop_invalid_header_fields.enabled")},
        name="Name", supplied={"elbv2:ModifyLoadBalancerAttributes.LoadBalancerArn": "the ARN CreateLoadBalancer returned"}),
    "aws:lb/targetGroup:TargetGroup": Resource("elbv2:CreateTargetGroup", {
        "deregistrationDelay": Attribute(TG_ATTRIBUTES, "Key", "deregistration_delay.timeout_seconds"),
        "loadBalancingAlgorithmType": Attribute(TG_ATTRIBUTES, "Key", "load_balancing.algorithm.type"),
        "lambdaMultiValueHeadersEnabled": Attribute(TG_ATTRIBUTES, "Key", "lambda.multi_value_headers.enabled"),
        "healthCheck": Spread(), "healthCheck.enabled": "HealthCheckEnabled",
        "healthCheck.healthyThreshold": "HealthyThresholdCount", "healthCheck.interval": "HealthCheckIntervalSeconds",
        "healthCheck.matcher": "Matcher.HttpCode", "healthCheck.path": "HealthCheckPath",
        "healthCheck.port": "HealthCheckPort", "healthCheck.protocol": "HealthCheckProtocol",
        "healthCheck.timeout": "HealthCheckTimeoutSeconds", "healthCheck.unhealthyThreshold": "UnhealthyThresholdCount"},
        name="Name", supplied={"elbv2:ModifyTargetGroupAttributes.TargetGroupArn": "the ARN CreateTargetGroup returned"}),
    "aws:lb/targetGroupAttachment:TargetGroupAttachment": Resource("elbv2:RegisterTargets", {
        "targetId": "Targets[].Id"}),
    "aws:lambda/function:Function": Resource("lambda:CreateFunction", {
        # The provider zips the archive's files and sends the zip's bytes.
        "code": Sent("Code.ZipFile", lambda archive: "zip of " + ", ".join(sorted(archive["archive"])))},
        name="FunctionName"),
    "aws:cloudwatch/eventRule:EventRule": Resource("events:PutRule", name="Name"),
    "aws:cloudwatch/eventTarget:EventTarget": Resource("events:PutTargets.Targets[]", {
        "rule": "events:PutTargets.Rule"}, supplied={
        "events:PutTargets.Targets[].Id": "the provider's generated target id (terraform-<unique id>)"}),
    "aws:lambda/permission:Permission": Resource("lambda:AddPermission", {"function": "FunctionName"}, supplied={
        "lambda:AddPermission.StatementId": "the provider's generated id (terraform-<unique id>) without statementId"}),
    "aws:lb/listener:Listener": Resource("elbv2:CreateListener", {
        "certificateArn": "Certificates[].CertificateArn",
        "defaultActions[].fixedResponse": "DefaultActions[].FixedResponseConfig"}),
    "aws:lb/listenerRule:ListenerRule": Resource("elbv2:CreateRule", {
        "conditions[].pathPattern": "Conditions[].PathPatternConfig"}),
    "aws:autoscaling/group:Group": Resource("autoscaling:CreateAutoScalingGroup", {
        "name": "AutoScalingGroupName",
        "initialLifecycleHooks": "LifecycleHookSpecificationList",
        "initialLifecycleHooks[].name": "LifecycleHookSpecificationList[].LifecycleHookName",
        "instanceRefresh": Spread(), "instanceRefresh.preferences": "autoscaling:StartInstanceRefresh.Preferences",
        "instanceRefresh.strategy": "autoscaling:StartInstanceRefresh.Strategy",
        # instance_warmup is a string in the provider's schema; it sends the number
        "instanceRefresh.preferences.instanceWarmup": Sent("autoscaling:StartInstanceRefresh.Preferences.InstanceWarmup",
                                                           int),
        "launchTemplate.id": "LaunchTemplate.LaunchTemplateId",
        "vpcZoneIdentifiers": Sent("VPCZoneIdentifier", ",".join),
        "enabledMetrics": "autoscaling:EnableMetricsCollection.Metrics",
        "metricsGranularity": "autoscaling:EnableMetricsCollection.Granularity",
        "warmPool": "autoscaling:PutWarmPool",
        "waitForCapacityTimeout": ProviderOnly("how long `pulumi up` waits for the group's instances to be healthy"),
        "enabledMetrics": "autoscaling:EnableMetricsCollection.Metrics",
        "metricsGranularity": "autoscaling:EnableMetricsCollection.Granularity"},
        name="AutoScalingGroupName", supplied={
            "autoscaling:StartInstanceRefresh.AutoScalingGroupName": "the group's name",
            "autoscaling:PutWarmPool.AutoScalingGroupName": "the group's name",
            "autoscaling:EnableMetricsCollection.AutoScalingGroupName": "the group's name"}),
    "aws:autoscaling/lifecycleHook:LifecycleHook": Resource("autoscaling:PutLifecycleHook", {
        "name": "LifecycleHookName"}),
    "aws:autoscaling/policy:Policy": Resource("autoscaling:PutScalingPolicy", {
        "targetTrackingConfiguration.customizedMetricSpecification.metricDimensions":
            "TargetTrackingConfiguration.CustomizedMetricSpecification.Dimensions"}, name="PolicyName"),
    "aws:autoscaling/schedule:Schedule": Resource("autoscaling:PutScheduledUpdateGroupAction"),
    "aws:scheduler/schedule:Schedule": Resource("scheduler:CreateSchedule", name="Name"),
    "aws:cloudwatch/logGroup:LogGroup": Resource("logs:CreateLogGroup", {
        "name": "logGroupName", "retentionInDays": "logs:PutRetentionPolicy.retentionInDays"},
        name="logGroupName", supplied={"logs:PutRetentionPolicy.logGroupName": "the group's name"}),
    "aws:cloudwatch/dashboard:Dashboard": Resource("cloudwatch:PutDashboard"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": Resource("cloudwatch:PutMetricAlarm", {
        "alarmActions": "AlarmActions", "okActions": "OKActions", "dimensions": Pairs("Dimensions[].Name", "Dimensions[].Value"),
        "metricQueries": "Metrics", "metricQueries[].metric": "Metrics[].MetricStat",
        "metricQueries[].metric.metricName": "Metrics[].MetricStat.Metric.MetricName",
        "metricQueries[].metric.namespace": "Metrics[].MetricStat.Metric.Namespace",
        "metricQueries[].metric.dimensions": Pairs("Metrics[].MetricStat.Metric.Dimensions[].Name",
                                                   "Metrics[].MetricStat.Metric.Dimensions[].Value")},
        name="AlarmName"),
    "aws:sns/topic:Topic": Resource("sns:CreateTopic", name="Name"),
    "aws:sns/topicSubscription:TopicSubscription": Resource("sns:Subscribe", {"topic": "TopicArn"}),
    "aws:secretsmanager/secret:Secret": Resource("secretsmanager:CreateSecret", {
        # name_prefix: the provider appends a 26-character unique id (terraform-plugin-sdk id.PrefixedUniqueId)
        "namePrefix": Sent("Name", lambda prefix: prefix + "20261207000000000000000001"),
        "recoveryWindowInDays": "secretsmanager:DeleteSecret.RecoveryWindowInDays"},
        supplied={"secretsmanager:DeleteSecret.SecretId": "the secret's ARN"}),
    "aws:secretsmanager/secretVersion:SecretVersion": Resource("secretsmanager:PutSecretValue"),
    "aws:acm/certificate:Certificate": Resource("acm:RequestCertificate"),
    "aws:acm/certificateValidation:CertificateValidation": Resource("acm:DescribeCertificate", {
        "validationRecordFqdns": ProviderOnly("the provider compares them with the certificate's validation "
                                              "records while it waits; no request carries them")}),
    "aws:route53/record:Record": Resource("route53:ChangeResourceRecordSets.ChangeBatch.Changes[].ResourceRecordSet", {
        "zoneId": "route53:ChangeResourceRecordSets.HostedZoneId", "ttl": "TTL",
        "records": "ResourceRecords", "records[]": "ResourceRecords[].Value",
        "aliases": Spread(), "aliases[]": "AliasTarget", "aliases[].name": "AliasTarget.DNSName",
        "aliases[].zoneId": "AliasTarget.HostedZoneId"},
        supplied={"route53:ChangeResourceRecordSets.ChangeBatch.Changes[].Action": "UPSERT (or CREATE)"}),
    # terraform-provider-aws wafv2 web ACL: custom_response_body blocks become the CustomResponseBodies map, keyed by
    # `key` (the name a rule's CustomResponseBodyKey refers to, of the same shape).
    "aws:wafv2/webAcl:WebAcl": Resource("wafv2:CreateWebACL", {
        "customResponseBodies": Spread(), "customResponseBodies[]": Spread(),
        "customResponseBodies[].key": "Rules[].Action.Block.CustomResponse.CustomResponseBodyKey",
        "customResponseBodies[].content": "CustomResponseBodies{}.Content",
        "customResponseBodies[].contentType": "CustomResponseBodies{}.ContentType"},
        name="Name"),
    "aws:wafv2/webAclAssociation:WebAclAssociation": Resource("wafv2:AssociateWebACL", {"webAclArn": "WebACLArn"}),
}
# The provider's launch template block device flags are tri-state strings ("true", "false", "" for unset).
for flag in ("deleteOnTermination", "encrypted"):
    RESOURCES["aws:ec2/launchTemplate:LaunchTemplate"].fields[f"blockDeviceMappings[].ebs.{flag}"] = Sent(  # type: ignore[index]
        f"BlockDeviceMappings[].Ebs.{flag[0].upper()}{flag[1:]}", lambda text: text == "true")

# The provider's own resource: its default tags are sent with every resource's tags (CreateTags' Tags).
RESOURCES["pulumi:providers:aws"] = Resource("ec2:CreateTags", {
    "defaultTags": Spread(), "defaultTags.tags": _tags("Tags[]"),
    "region": ProviderOnly("the endpoint the provider calls"),
    "skipCredentialsValidation": ProviderOnly("the provider skips its STS call at start"),
    "skipRegionValidation": ProviderOnly("the provider skips its check of the region name")},
    supplied={"ec2:CreateTags.Resources": "each resource the provider tags"})
