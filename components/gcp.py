"""GCP: GPU VMs in a regional managed instance group behind a global external Application Load Balancer.

Only GCP specifics live here; the spec, sizing, vLLM arguments and user-data come from fleet/.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Mapping

import pulumi
import pulumi_gcp
from pulumi_gcp import compute, dns, secretmanager, serviceaccount, storage

from components.base import FleetComponent
from fleet import catalog, serving
from fleet.bootstrap import render_user_data
from fleet.errors import ConfigError
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

# Canonical's Ubuntu 22.04 with the NVIDIA driver and cloud-init. The 580 driver branch, not 550: current CUDA
# wheels of torch (which vLLM pins) need a driver of the CUDA 13 era, and 580 is NVIDIA's long-term branch.
IMAGE_PROJECT = "ubuntu-os-accelerator-images"
IMAGE_FAMILY = "ubuntu-accelerator-2204-amd64-with-nvidia-580"
BOOT_DISK_GB = 150  # the image's own ~50 GB plus the vLLM venv
# The weights cache disk's device name: cloud-init/clouds/gcp.sh.j2 finds it as /dev/disk/by-id/google-<name>.
DATA_DISK_DEVICE = "vllm-cache"
# Where Google's load balancer proxies and health checkers connect from; the only sources allowed to vLLM.
LB_SOURCE_RANGES = ("130.211.0.0/22", "35.191.0.0/16")
IAP_SSH_RANGE = "35.235.240.0/20"
# The load balancer cuts a response (a streamed generation included) that takes longer than this.
BACKEND_TIMEOUT_SECONDS = 1200
# Let in-flight generations finish before a VM leaves the backend (scale-in, rolling update).
CONNECTION_DRAINING_SECONDS = 300
# Compute Engine's limit on the autohealing initial delay and the autoscaler's initialization period.
MAX_INITIAL_DELAY_SECONDS = 3600
# Cloud Armor accepts at most this many ranges in one basic (src_ip_ranges) rule.
ARMOR_RANGES_PER_RULE = 10
ARMOR_DEFAULT_RULE_PRIORITY = 2147483647
USER_DATA = ("gcp:compute/instanceTemplate:InstanceTemplate", "metadata.user-data", "text")

_OPTIONS = {
    "project": "the GCP project id to deploy into (required), e.g. my-project-123",
    "network": "an existing VPC network (name or self link) instead of a new one; needs subnetwork",
    "subnetwork": "an existing subnetwork of network in the stack's region, for the GPU VMs",
    "subnetCidr": "CIDR of a new subnetwork (default 10.90.0.0/20)",
    "cloudNat": "false when the network already has Cloud NAT for the subnetwork (default true)",
    "zones": "zones of the region for the VMs (default: every zone of the region that offers the GPU)",
    "iapSsh": "true to allow SSH from Identity-Aware Proxy (35.235.240.0/20) only (default false)",
    "image": "a boot image (self link, or projects/<p>/global/images/family/<f>) instead of Canonical's Ubuntu accelerator image",
}
_NAME = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
_PROJECT = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_SELF_LINK_PREFIX = r"^(https://www\.googleapis\.com/compute/v1/)?"
_NETWORK = re.compile(rf"^{_NAME}$|{_SELF_LINK_PREFIX}projects/[^/]+/global/networks/{_NAME}$")
_SUBNETWORK = re.compile(rf"^{_NAME}$|{_SELF_LINK_PREFIX}projects/[^/]+/regions/(?P<region>[a-z0-9-]+)/subnetworks/{_NAME}$")
_IMAGE = re.compile(rf"{_SELF_LINK_PREFIX}projects/[^/]+/global/images/(family/)?{_NAME}$")
_CERTIFICATE = re.compile(rf"{_SELF_LINK_PREFIX}projects/[^/]+/global/sslCertificates/{_NAME}$")
_DNS_ZONE = re.compile(rf"^{_NAME}$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class GcpOptions:
    project: str
    network: str | None
    subnetwork: str | None
    subnet_cidr: str
    cloud_nat: bool
    zones: tuple[str, ...]
    iap_ssh: bool
    image: str | None
    labels: Mapping[str, str]


def label_value(text: str) -> str:
    """Text as a GCP label value: lowercase letters, digits, _ and -, at most 63."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def _labels(spec: FleetSpec) -> dict[str, str]:
    for key, value in spec.tags.items():
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            suggestion = f"{label_value(key).lstrip('0123456789_-') or 'tag'}: {label_value(value)}"
            raise ConfigError(f"tags.{key}", value,
                              f"on GCP tags become labels: a key starts with a lowercase letter, and keys and values "
                              f"hold only lowercase letters, digits, _ and - (at most 63), e.g. {suggestion}")
    return {**spec.resource_tags, "vllm-fleet-stack": label_value(spec.stack)}


def _bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"gcp.{key}", value, "must be true or false")
    return value


def _zones(spec: FleetSpec, sizing: Sizing, requested: Any) -> tuple[str, ...]:
    # Sizing chose a machine type the region offers (catalog gpu_zones): these are its zones.
    gpu, machine = sizing.instance.gpu, sizing.instance.name
    offered = catalog.cloud("gcp").raw["gpu_zones"][gpu][spec.region]
    if requested is None:
        return tuple(offered)
    if not isinstance(requested, list) or not requested or not all(isinstance(zone, str) for zone in requested):
        raise ConfigError("gcp.zones", requested, f"must list zones of {spec.region}, e.g. [{offered[0]}]")
    for zone in requested:
        if zone not in offered:
            problem = (f"offers no {gpu} GPUs ({machine})" if zone.startswith(f"{spec.region}-")
                       else f"is not a zone of the stack's region, {spec.region}")
            raise ConfigError("gcp.zones", zone, f"{problem}; zones of {spec.region} with {gpu}: {', '.join(offered)}")
    if len(set(requested)) != len(requested):
        raise ConfigError("gcp.zones", requested, "lists a zone twice")
    return tuple(requested)


def parse_options(spec: FleetSpec, sizing: Sizing) -> GcpOptions:
    options = dict(spec.cloud_options)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"gcp.{unknown[0]}", options[unknown[0]], f"is not a GCP option; known: {', '.join(_OPTIONS)}")
    project = options.get("project")
    if project is None:
        raise ConfigError("gcp.project", None,
                          "GCP stacks need the project to deploy into: pulumi config set --path "
                          "'vllm-fleet:gcp.project' <project id> (the gcp:project provider setting is not read)")
    if not isinstance(project, str) or not _PROJECT.match(project):
        raise ConfigError("gcp.project", project,
                          "must be a project id: 6-30 lowercase letters, digits and -, starting with a letter, "
                          "e.g. my-project-123 (the id, not the display name or the project number)")
    network, subnetwork = options.get("network"), options.get("subnetwork")
    if (network is None) != (subnetwork is None):
        raise ConfigError("gcp.network" if network is None else "gcp.subnetwork", None,
                          "an existing network needs both network and subnetwork (in the stack's region)")
    if network is not None:
        if not isinstance(network, str) or not _NETWORK.match(network):
            raise ConfigError("gcp.network", network, "must be a network name or projects/<p>/global/networks/<name>")
        match = _SUBNETWORK.match(subnetwork) if isinstance(subnetwork, str) else None
        if not match:
            raise ConfigError("gcp.subnetwork", subnetwork,
                              f"must be a subnetwork name or projects/<p>/regions/{spec.region}/subnetworks/<name>")
        if match.group("region") not in (None, spec.region):
            raise ConfigError("gcp.subnetwork", subnetwork, f"must be in the stack's region, {spec.region}")
        if "subnetCidr" in options:
            raise ConfigError("gcp.subnetCidr", options["subnetCidr"], "only applies to a new network (without network)")
    cidr = options.get("subnetCidr", "10.90.0.0/20")
    try:
        block = ipaddress.ip_network(str(cidr))
        if not (block.is_private and 16 <= block.prefixlen <= 24):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError("gcp.subnetCidr", cidr, "must be a private network from /16 to /24, e.g. 10.90.0.0/20") from None
    image = options.get("image")
    if image is not None and not (isinstance(image, str) and _IMAGE.match(image)):
        raise ConfigError("gcp.image", image,
                          "must be projects/<project>/global/images/<name> or projects/<project>/global/images/family/<family>")

    if spec.on_demand_base:
        raise ConfigError("onDemandBase", spec.on_demand_base,
                          "a GCP managed instance group cannot mix Spot and standard VMs: set onDemandBase to 0 "
                          "(or spot: false for standard VMs only)")
    if spec.certificate is not None and not _CERTIFICATE.match(spec.certificate):
        raise ConfigError("certificate", spec.certificate,
                          "on GCP must be an existing global SSL certificate, projects/<project>/global/sslCertificates/"
                          "<name>; leave it unset for a Google-managed certificate for domain")
    if spec.dns_zone is not None and not _DNS_ZONE.match(spec.dns_zone):
        raise ConfigError("dnsZone", spec.dns_zone, "on GCP must be the name of a Cloud DNS managed zone, e.g. example-com")

    return GcpOptions(
        project=project, network=network, subnetwork=subnetwork, subnet_cidr=str(cidr),
        cloud_nat=_bool(options, "cloudNat", True), zones=_zones(spec, sizing, options.get("zones")),
        iap_ssh=_bool(options, "iapSsh", False), image=image, labels=_labels(spec),
    )


class Fleet(FleetComponent):
    def __init__(self, name: str, spec: FleetSpec, sizing: Sizing, options: GcpOptions,
                 secrets: Mapping[str, pulumi.Output[str]]):
        # GCP resource names (autonamed from these) must start with a letter; a stack name may start with a digit.
        super().__init__("gcp", name if name[:1].isalpha() else f"vllm-{name}")
        provider = pulumi_gcp.Provider(f"{name}-gcp", project=options.project, region=spec.region,
                                       default_labels=dict(options.labels), opts=pulumi.ResourceOptions(parent=self))
        self._opts = pulumi.ResourceOptions(parent=self, provider=provider)
        self._invoke = pulumi.InvokeOptions(provider=provider)

        network, subnetwork = self._network(spec, options)
        account = serviceaccount.Account(
            self._child("vm"), account_id=f"vllm-{spec.name}"[:30].rstrip("-"),
            display_name=f"vllm-fleet {spec.stack} GPU VMs", opts=self._opts)
        member = pulumi.Output.concat("serviceAccount:", account.email)
        self._firewall(spec, options, network, account)
        secret_names, grants = self._secrets(spec, secrets, member)
        template = self._instance_template(spec, sizing, options, subnetwork, account, secret_names, grants)
        health_check, autohealing_check = self._health_checks()
        group = self._instance_group(spec, sizing, options, template, autohealing_check)
        self._autoscaler(spec, sizing, group)
        address, scheme = self._load_balancer(spec, group, health_check)

        self._serve_at(scheme, spec.domain or address.address)

    # --- network -----------------------------------------------------------------------------------------
    def _network(self, spec: FleetSpec, options: GcpOptions):
        if options.network:
            network, subnetwork = options.network, options.subnetwork
        else:
            vpc = compute.Network(self._child("vpc"), auto_create_subnetworks=False,
                                  description=f"vllm-fleet {spec.stack}", opts=self._opts)
            network = vpc.self_link
            # Private Google Access: Secret Manager and Cloud Storage without going through the NAT.
            subnetwork = compute.Subnetwork(self._child("vms"), network=network, region=spec.region,
                                            ip_cidr_range=options.subnet_cidr, private_ip_google_access=True,
                                            opts=self._opts).self_link
        if options.cloud_nat:
            # The VMs have no public IP: Cloud NAT gives them the internet for apt, PyPI and Hugging Face.
            router = compute.Router(self._child("nat"), network=network, region=spec.region, opts=self._opts)
            compute.RouterNat(
                self._child("nat"), router=router.name, region=spec.region,
                nat_ip_allocate_option="AUTO_ONLY",
                source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
                subnetworks=[compute.RouterNatSubnetworkArgs(name=subnetwork,
                                                             source_ip_ranges_to_nats=["ALL_IP_RANGES"])],
                # Weights downloads open many connections at once; 1024 ports a VM still fits 63 VMs an IP.
                min_ports_per_vm=1024,
                log_config=compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
                opts=self._opts)
        return network, subnetwork

    def _firewall(self, spec: FleetSpec, options: GcpOptions, network, account):
        # Rules target the VMs' service account, which (unlike a network tag) only IAM can change. The deny rule
        # outranks the allow-all rules an existing network may carry (the default network allows SSH and RDP from
        # anywhere at priority 65534); the allow rules outrank the deny.
        targets = [account.email]
        compute.Firewall(self._child("vllm-from-lb"), network=network, direction="INGRESS", priority=900,
                         description=f"vllm-fleet {spec.stack}: vLLM from Google's load balancers and health checks only",
                         source_ranges=list(LB_SOURCE_RANGES), target_service_accounts=targets,
                         allows=[compute.FirewallAllowArgs(protocol="tcp", ports=[str(serving.SERVE_PORT)])],
                         opts=self._opts)
        if options.iap_ssh:
            compute.Firewall(self._child("ssh-from-iap"), network=network, direction="INGRESS", priority=900,
                             description=f"vllm-fleet {spec.stack}: SSH through Identity-Aware Proxy only",
                             source_ranges=[IAP_SSH_RANGE], target_service_accounts=targets,
                             allows=[compute.FirewallAllowArgs(protocol="tcp", ports=["22"])], opts=self._opts)
        compute.Firewall(self._child("deny-other-ingress"), network=network, direction="INGRESS", priority=1000,
                         description=f"vllm-fleet {spec.stack}: nothing else reaches the GPU VMs",
                         source_ranges=["0.0.0.0/0"], target_service_accounts=targets,
                         denies=[compute.FirewallDenyArgs(protocol="all")], opts=self._opts)

    # --- identity and secrets ----------------------------------------------------------------------------
    def _secrets(self, spec: FleetSpec, secrets: Mapping[str, pulumi.Output[str]], member):
        """Secret Manager secrets the VMs read at boot, and the grants of each to the VMs' service account."""
        names, grants = {}, []
        for key, value in secrets.items():
            secret = secretmanager.Secret(
                self._child(key), secret_id=f"vllm-fleet-{label_value(spec.stack)}-{key}",
                replication=secretmanager.SecretReplicationArgs(auto=secretmanager.SecretReplicationAutoArgs()),
                opts=self._opts)
            secretmanager.SecretVersion(self._child(key), secret=secret.id, secret_data=value, opts=self._opts)
            grants.append(secretmanager.SecretIamMember(
                self._child(f"{key}-reader"), secret_id=secret.secret_id, role="roles/secretmanager.secretAccessor",
                member=member, opts=self._opts))
            names[key] = secret.name  # projects/<number>/secrets/<id>, what the VM asks Secret Manager for
        if spec.model_is_bucket:
            # Cloud Storage IAM has no prefix scope without conditions (which listing ignores): the whole bucket.
            bucket = spec.model[len("gs://"):].split("/", 1)[0]
            grants.append(storage.BucketIAMMember(self._child("read-model"), bucket=bucket,
                                                  role="roles/storage.objectViewer", member=member, opts=self._opts))
        return names, grants

    # --- instances ---------------------------------------------------------------------------------------
    def _instance_template(self, spec, sizing: Sizing, options: GcpOptions, subnetwork, account, secret_names, grants):
        if options.image:
            image = pulumi.Output.from_input(options.image)
        else:
            # Pinned to the family's image of this `pulumi up`: every VM of a template boots the same image, and a
            # newer one rolls out only with the next `pulumi up` (as a rolling update that keeps capacity).
            image = compute.get_image_output(family=IMAGE_FAMILY, project=IMAGE_PROJECT, opts=self._invoke).self_link
        user_data = pulumi.Output.all(**secret_names).apply(lambda names: render_user_data(spec, sizing, names))
        if spec.spot:
            # DELETE: the group recreates a preempted VM from the template when capacity returns.
            scheduling = compute.InstanceTemplateSchedulingArgs(
                provisioning_model="SPOT", preemptible=True, automatic_restart=False,
                on_host_maintenance="TERMINATE", instance_termination_action="DELETE")
        else:
            # GPU VMs cannot live-migrate: host maintenance stops them, and they restart by themselves.
            scheduling = compute.InstanceTemplateSchedulingArgs(
                provisioning_model="STANDARD", automatic_restart=True, on_host_maintenance="TERMINATE")
        disk_labels = dict(options.labels)
        return compute.InstanceTemplate(
            self._child("gpu"),
            description=f"vllm-fleet {spec.stack}: {spec.served_model_name} on {sizing.instance.name}",
            machine_type=sizing.instance.name,  # A2, A3 and G2 machine types come with their GPUs attached
            disks=[
                compute.InstanceTemplateDiskArgs(boot=True, source_image=image, disk_size_gb=BOOT_DISK_GB,
                                                 disk_type="pd-balanced", auto_delete=True, labels=disk_labels),
                # The weights cache: SSD so that a new VM loads the weights quickly.
                compute.InstanceTemplateDiskArgs(boot=False, device_name=DATA_DISK_DEVICE, disk_type="pd-ssd",
                                                 disk_size_gb=sizing.data_disk_gb, auto_delete=True, labels=disk_labels),
            ],
            # No access_configs: no public IP. Outbound traffic goes through Cloud NAT.
            network_interfaces=[compute.InstanceTemplateNetworkInterfaceArgs(subnetwork=subnetwork)],
            service_account=compute.InstanceTemplateServiceAccountArgs(email=account.email, scopes=["cloud-platform"]),
            scheduling=scheduling,
            # Secure Boot stays off: it loads only kernel modules signed by a key the firmware trusts. Canonical's
            # precompiled NVIDIA modules are signed, but the bootstrap's fallback (cuda-drivers from NVIDIA's
            # repository, built by DKMS) and the driver of an `image` of the user's are not, and a refused
            # module means a VM without GPUs that never turns healthy. vTPM and integrity monitoring stay on.
            shielded_instance_config=compute.InstanceTemplateShieldedInstanceConfigArgs(
                enable_secure_boot=False, enable_vtpm=True, enable_integrity_monitoring=True),
            # cloud-init reads `user-data`; it holds secret names only, vllm-fleet-setup fetches the values.
            metadata={"user-data": user_data, "enable-oslogin": "TRUE", "block-project-ssh-keys": "TRUE"},
            # VMs start only once they may read their secrets (and the weights).
            opts=self._opts.merge(pulumi.ResourceOptions(depends_on=grants)),
        )

    def _health_checks(self):
        def check(suffix: str, interval: int, timeout: int, healthy: int, unhealthy: int, what: str):
            return compute.HealthCheck(
                self._child(suffix), description=what, check_interval_sec=interval, timeout_sec=timeout,
                healthy_threshold=healthy, unhealthy_threshold=unhealthy,
                http_health_check=compute.HealthCheckHttpHealthCheckArgs(
                    port=serving.SERVE_PORT, request_path=serving.HEALTH_PATH), opts=self._opts)

        serving_check = check("health", 10, 5, 2, 3, "vLLM /health: which VMs get requests")
        # Autohealing recreates a VM (and downloads the weights again): only after minutes of failed checks.
        autohealing_check = check("autohealing", 30, 10, 1, 6, "vLLM /health: which VMs are recreated")
        return serving_check, autohealing_check

    def _instance_group(self, spec, sizing: Sizing, options: GcpOptions, template, autohealing_check):
        initial_delay = min(sizing.startup_grace_seconds, MAX_INITIAL_DELAY_SECONDS)
        if initial_delay < sizing.startup_grace_seconds:
            self._warn(f"{spec.stack}: a new VM may need {sizing.startup_grace_seconds} s to load the model, but GCP "
                       f"starts autohealing checks after at most {MAX_INITIAL_DELAY_SECONDS} s: slow VMs may be recreated")
        autoscaled = spec.replicas.min != spec.replicas.max
        return compute.RegionInstanceGroupManager(
            self._child("gpu"),
            base_instance_name=self._child("gpu"),
            region=spec.region,
            versions=[compute.RegionInstanceGroupManagerVersionArgs(name="vllm",
                                                                    instance_template=template.self_link_unique)],
            # BALANCED: spread over the zones with the GPU, but create VMs where there is capacity (GPUs run out
            # zone by zone); it requires proactive redistribution off.
            distribution_policy_zones=list(options.zones),
            distribution_policy_target_shape="BALANCED",
            named_ports=[compute.RegionInstanceGroupManagerNamedPortArgs(name="http", port=serving.SERVE_PORT)],
            # Without an autoscaler the group holds `desired` VMs; with one, `desired` is the first size and the
            # autoscaler owns it afterwards (ignore_changes below).
            target_size=spec.replicas.desired,
            auto_healing_policies=compute.RegionInstanceGroupManagerAutoHealingPoliciesArgs(
                health_check=autohealing_check.id,
                # Long enough to install vLLM and download and load the weights before checks count.
                initial_delay_sec=initial_delay),
            # Replace by creating first: serving capacity never drops. A regional group's fixed surge must be 0 or
            # at least its number of zones.
            update_policy=compute.RegionInstanceGroupManagerUpdatePolicyArgs(
                type="PROACTIVE", minimal_action="REPLACE", most_disruptive_allowed_action="REPLACE",
                replacement_method="SUBSTITUTE", instance_redistribution_type="NONE",
                max_unavailable_fixed=0, max_surge_fixed=len(options.zones)),
            # A repaired VM comes from the current template, not the one it was created from.
            instance_lifecycle_policy=compute.RegionInstanceGroupManagerInstanceLifecyclePolicyArgs(
                force_update_on_repair="YES", default_action_on_failure="REPAIR"),
            # `pulumi up` returns once the group exists; VMs become healthy minutes later (weights download).
            wait_for_instances=False,
            opts=self._opts.merge(pulumi.ResourceOptions(ignore_changes=["targetSize"] if autoscaled else None)),
        )

    def _autoscaler(self, spec: FleetSpec, sizing: Sizing, group):
        if spec.replicas.min == spec.replicas.max:
            return
        warmup = min(sizing.startup_grace_seconds, MAX_INITIAL_DELAY_SECONDS)
        compute.RegionAutoscaler(
            self._child("gpu"), region=spec.region, target=group.id,
            autoscaling_policy=compute.RegionAutoscalerAutoscalingPolicyArgs(
                min_replicas=spec.replicas.min, max_replicas=spec.replicas.max, mode="ON",
                # The backend's capacity is targetRequestsPerMinute a VM (max_rate_per_instance): scale out when
                # the VMs get more than that.
                load_balancing_utilization=compute.RegionAutoscalerAutoscalingPolicyLoadBalancingUtilizationArgs(
                    target=1.0),
                # A new VM's first minutes (install, weights) say nothing about load.
                cooldown_period=warmup,
                # A VM removed too early takes the startup time to come back: one at a time.
                scale_in_control=compute.RegionAutoscalerAutoscalingPolicyScaleInControlArgs(
                    max_scaled_in_replicas=compute.RegionAutoscalerAutoscalingPolicyScaleInControlMaxScaledInReplicasArgs(
                        fixed=1),
                    time_window_sec=warmup)),
            opts=self._opts)

    # --- load balancer -----------------------------------------------------------------------------------
    def _security_policy(self, spec: FleetSpec):
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
        return compute.SecurityPolicy(self._child("allowed-cidrs"), type="CLOUD_ARMOR", rules=rules,
                                      description=f"vllm-fleet {spec.stack}: only allowedCidrs reach the endpoint",
                                      opts=self._opts)

    def _load_balancer(self, spec: FleetSpec, group, health_check):
        backend = compute.BackendService(
            self._child("vllm"), load_balancing_scheme="EXTERNAL_MANAGED", protocol="HTTP", port_name="http",
            timeout_sec=BACKEND_TIMEOUT_SECONDS, connection_draining_timeout_sec=CONNECTION_DRAINING_SECONDS,
            health_checks=health_check.id, security_policy=self._security_policy(spec).self_link,
            # Generations vary from milliseconds to minutes: send each request to the least busy VM.
            locality_lb_policy="LEAST_REQUEST",
            backends=[compute.BackendServiceBackendArgs(
                group=group.instance_group, balancing_mode="RATE", capacity_scaler=1.0,
                max_rate_per_instance=spec.replicas.target_requests_per_minute / 60)],
            opts=self._opts)
        url_map = compute.URLMap(self._child("lb"), default_service=backend.id, opts=self._opts)
        address = compute.GlobalAddress(self._child("lb"), ip_version="IPV4", opts=self._opts)
        if not spec.domain:
            self._warn_plain_http(spec, "Set domain (and dnsZone) for HTTPS.")
            proxy = compute.TargetHttpProxy(self._child("http"), url_map=url_map.id, opts=self._opts)
            compute.GlobalForwardingRule(self._child("http"), target=proxy.id, ip_address=address.id,
                                         port_range="80", ip_protocol="TCP", load_balancing_scheme="EXTERNAL_MANAGED",
                                         opts=self._opts)
            return address, "http"
        certificate = spec.certificate or compute.ManagedSslCertificate(
            self._child("tls"), managed=compute.ManagedSslCertificateManagedArgs(domains=[spec.domain]),
            opts=self._opts).id
        tls_policy = compute.SSLPolicy(self._child("tls"), profile="MODERN", min_tls_version="TLS_1_2", opts=self._opts)
        proxy = compute.TargetHttpsProxy(self._child("https"), url_map=url_map.id, ssl_certificates=[certificate],
                                         ssl_policy=tls_policy.id, opts=self._opts)
        compute.GlobalForwardingRule(self._child("https"), target=proxy.id, ip_address=address.id,
                                     port_range="443", ip_protocol="TCP", load_balancing_scheme="EXTERNAL_MANAGED",
                                     opts=self._opts)
        if spec.dns_zone:
            dns.RecordSet(self._child("endpoint"), managed_zone=spec.dns_zone, name=f"{spec.domain}.", type="A",
                          ttl=300, rrdatas=[address.address], opts=self._opts)
        else:
            self._warn(f"{spec.stack}: point {spec.domain} (A record) at the load balancer's address (gcloud compute "
                       f"addresses list --global --filter=labels.vllm-fleet-stack={label_value(spec.stack)}) to use "
                       f"the endpoint" + (""
                       if spec.certificate else "; Google issues the managed certificate only once it resolves there"))
        return address, "https"


# --- offline plan: what GCP would answer -----------------------------------------------------------------
OFFLINE_PROJECT = "offline-plan-project"
OFFLINE_PROJECT_NUMBER = "123456789012"


def offline_invoke(token: str, args: Mapping[str, Any]) -> dict[str, Any]:
    if token == "gcp:compute/getImage:getImage":
        name = f"{args['family']}-v20261101"
        return {"name": name, "family": args["family"], "project": args["project"],
                "selfLink": f"https://www.googleapis.com/compute/v1/projects/{args['project']}/global/images/{name}"}
    raise NotImplementedError(f"the offline plan has no answer for {token}")


def offline_state(type_: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    kind = type_.split(":")[-1]
    scope = f"regions/{inputs['region']}" if "region" in inputs else "global"
    self_link = f"https://www.googleapis.com/compute/v1/projects/{OFFLINE_PROJECT}/{scope}/{kind[0].lower()}{kind[1:]}s/{name}"
    state: dict[str, Any] = {"name": inputs.get("name", name), "selfLink": self_link}
    if type_ == "gcp:compute/instanceTemplate:InstanceTemplate":
        state["selfLinkUnique"] = f"{self_link}?uniqueId=1234567890123456789"
    if type_ == "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager":
        state["instanceGroup"] = self_link.replace("/regionInstanceGroupManagers/", "/instanceGroups/")
    if type_ == "gcp:compute/globalAddress:GlobalAddress":
        state["address"] = "192.0.2.10"
    if type_ == "gcp:serviceaccount/account:Account":
        state["email"] = f"{inputs['accountId']}@{OFFLINE_PROJECT}.iam.gserviceaccount.com"
    if type_ == "gcp:secretmanager/secret:Secret":
        state["name"] = f"projects/{OFFLINE_PROJECT_NUMBER}/secrets/{inputs['secretId']}"
    return state
