"""Every GCP stack under Pulumi's mocks: the resource graph, its security posture, its outputs, and the GCP config
errors that stop a stack before anything is created."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from components.edge_model import API_PATH
from conftest import PlannedStack, config_of, run_plan, stacks_of, write_files
from fleet.bootstrap import PATHS

GCP_STACKS = stacks_of("gcp")
FIREWALL = "gcp:compute/firewall:Firewall"
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
GROUP = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
AUTOSCALER = "gcp:compute/regionAutoscaler:RegionAutoscaler"
HEALTH_CHECK = "gcp:compute/healthCheck:HealthCheck"
BACKEND = "gcp:compute/backendService:BackendService"
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_READER = "gcp:secretmanager/secretIamMember:SecretIamMember"
LB_RANGES = {"130.211.0.0/22", "35.191.0.0/16"}
IAP_RANGE = "35.235.240.0/20"




def sizing_of(stack: str):
    from fleet.sizing import size
    from fleet.spec import parse_spec

    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config_of(stack).items()}
    return size(parse_spec(stack, config, set()))


def gcp_spec(**changes):
    """A GCP spec parsed in-process from a small good config; a change of None drops that key."""
    from fleet.spec import parse_spec

    raw = {"cloud": "gcp", "region": "us-central1", "model": "codellama/CodeLlama-7b-Instruct-hf",
           "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8"], "gcp": {"project": "my-project-123"}, **changes}
    return parse_spec("t", {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items() if v is not None},
                      set())


def gcp_error(**changes):
    from components.gcp import parse_options
    from fleet.errors import ConfigError
    from fleet.sizing import size

    with pytest.raises(ConfigError) as caught:
        spec = gcp_spec(**changes)
        parse_options(spec, size(spec))
    return caught.value


def ports(rule: dict) -> set[str]:
    return {port for allow in rule.get("allows") or [] for port in allow.get("ports") or ["all"]}


def vm_service_account(plan: PlannedStack) -> str:
    return plan.one(TEMPLATE)["serviceAccount"]["email"]


def test_both_issue_stacks_exist():
    assert {"codellama-gcp", "starcoder2-gcp-dev"} <= set(GCP_STACKS)


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_only_the_load_balancer_reaches_vllm_and_nothing_reaches_ssh(stack, plan_of):
    plan = plan_of(stack)
    rules = plan.named(FIREWALL)
    allows = {name: rule for name, rule in rules.items() if rule.get("allows")}
    for name, rule in allows.items():
        assert rule["direction"] == "INGRESS"
        assert "0.0.0.0/0" not in rule["sourceRanges"], name
        assert rule["targetServiceAccounts"] == [vm_service_account(plan)], name
        if "8000" in ports(rule):  # vLLM, and the health endpoint the autohealing check asks
            assert set(rule["sourceRanges"]) == LB_RANGES and ports(rule) == {"8000", "8001"}, name
        else:
            assert rule["sourceRanges"] == [IAP_RANGE] and ports(rule) == {"22"}, name
    assert [ports(r) for r in allows.values()] == [{"8000", "8001"}]  # no SSH unless iapSsh asks for it
    # Everything else is denied to the VMs, above the allow-all rules an existing network may carry.
    (deny,) = [r for r in rules.values() if r.get("denies")]
    assert deny["sourceRanges"] == ["0.0.0.0/0"] and deny["denies"] == [{"protocol": "all"}]
    assert all(r["priority"] < deny["priority"] < 65534 for r in allows.values())


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_vms_have_no_public_ip_stop_for_maintenance_and_boot_the_bootstrap(stack, plan_of):
    from components.gcp.fleet import DATA_DISK_DEVICE
    from fleet import catalog

    pinned = catalog.cloud("gcp").raw["image"]

    plan = plan_of(stack)
    template = plan.one(TEMPLATE)
    assert template["machineType"] == plan.outputs["instanceType"]
    assert "guestAccelerators" not in template  # g2/a2/a3 machine types carry their GPUs
    (interface,) = template["networkInterfaces"]
    assert "accessConfigs" not in interface
    scheduling = template["scheduling"]
    assert scheduling["onHostMaintenance"] == "TERMINATE"
    if config_of(stack).get("spot"):
        assert scheduling["provisioningModel"] == "SPOT" and scheduling["instanceTerminationAction"] == "DELETE"
        assert scheduling["automaticRestart"] is False
    else:
        assert scheduling["provisioningModel"] == "STANDARD" and scheduling["automaticRestart"] is True
    shielded = template["shieldedInstanceConfig"]
    assert shielded["enableVtpm"] is True and shielded["enableIntegrityMonitoring"] is True
    boot, data = template["disks"]
    # the pinned image, never a family: a `pulumi up` next month boots what this one did
    assert boot["boot"] is True and boot["sourceImage"].endswith(
        f"projects/{pinned['project']}/global/images/{pinned['name']}")
    assert data["deviceName"] == DATA_DISK_DEVICE and data["diskType"] == "pd-ssd"
    assert data["diskSizeGb"] == sizing_of(stack).data_disk_gb >= 2 * plan.outputs["memory"]["weightsGib"]
    assert f"/dev/disk/by-id/google-{DATA_DISK_DEVICE}" in plan.user_data
    assert template["metadata"]["user-data"] == plan.user_data and plan.user_data.startswith("#cloud-config")
    assert template["metadata"]["block-project-ssh-keys"] == "TRUE"


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_group_spans_the_gpu_zones_heals_on_health_and_updates_without_losing_capacity(stack, plan_of):
    from fleet import catalog

    plan = plan_of(stack)
    group = plan.one(GROUP)
    zones = catalog.cloud("gcp").raw["gpu_zones"][plan.outputs["gpuType"]][config_of(stack)["region"]]
    assert group["distributionPolicyZones"] == zones
    assert {"name": "http", "port": 8000} in group["namedPorts"]
    update = group["updatePolicy"]
    assert update["type"] == "PROACTIVE" and update["maxUnavailableFixed"] == 0
    assert update["maxSurgeFixed"] >= max(1, len(zones))  # a regional group surges by at least its zones
    assert group["distributionPolicyTargetShape"] == "BALANCED" and update["instanceRedistributionType"] == "NONE"
    # pulumi up waits for the roll (the old template is deleted only after it), for as long as it may take.
    assert group["waitForInstances"] is True and group["waitForInstancesStatus"] == "UPDATED"
    budget = plan.outputs["timeToServe"]
    slow_minutes = (budget["seconds"] + budget["download"]) / 60
    timeouts = plan.options_of(GROUP)["customTimeouts"]
    assert timeouts["create"] == timeouts["update"]
    assert int(timeouts["update"].removesuffix("m")) >= slow_minutes * plan.outputs["replicas"]["max"] / len(zones)


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_autohealing_asks_the_health_endpoint_and_its_cap_no_longer_limits_a_large_model(stack, plan_of):
    """GCP caps autohealing's initial delay at 3600 s. The check asks the VM's boot-aware health endpoint, which
    answers healthy while the setup makes progress: a VM still downloading when the delay ends is kept
    (tests/test_readiness.py runs it), so every stack has autohealing, the large ones too."""
    plan = plan_of(stack)
    group = plan.one(GROUP)
    budget = plan.outputs["timeToServe"]
    slow = budget["seconds"] + budget["download"]
    healing = group["autoHealingPolicies"]
    check = plan.named(HEALTH_CHECK)[healing["healthCheck"].removesuffix("-id")]
    assert check["httpHealthCheck"] == {"requestPath": "/vllm-fleet-health", "port": 8001,
                                        "response": '{"ApplicationHealthState": "Healthy"'}
    assert healing["initialDelaySec"] == min(slow, 3600)
    # Until shortly before the delay ends a starting VM answers "not yet", so that a roll waits for it to serve.
    config = json.loads(write_files(plan.user_data)[PATHS["health_config"]]["content"])
    assert config["starting_healthy_after_seconds"] == min(slow, 3600) - 300
    assert config["listen"] == "0.0.0.0"
    assert not [w for w in plan.outputs["warnings"] if "autohealing" in w]
    # The load balancer keeps asking vLLM for traffic.
    serving_check = plan.named(HEALTH_CHECK)[f"{stack}-health"]
    assert serving_check["httpHealthCheck"] == {"requestPath": "/health", "port": 8000}


def test_a_stack_whose_setup_outlasts_the_cap_keeps_autohealing_but_no_standby_pool(plan_of):
    plan = plan_of("codellama-gcp")  # 70B: ~58 min to serve at the assumed rate, over an hour at half of it
    budget = plan.outputs["timeToServe"]
    assert budget["seconds"] + budget["download"] > 3600
    assert plan.one(GROUP)["autoHealingPolicies"]["initialDelaySec"] == 3600
    # The group stops a standby VM when its (capped) delay ends, progress or not: one still downloading would
    # start each morning without its weights.
    hours = plan.outputs["officeHours"]
    assert hours["standbyPool"] is None and "3600 s" in hours["standbyNote"]


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_a_group_without_a_pool_says_so_explicitly(stack, plan_of):
    """standby_policy and target_stopped_size are optional and computed in the provider: left out, nothing is sent
    and a pool an earlier config made stays, with its disks."""
    plan = plan_of(stack)
    group = plan.one(GROUP)
    if plan.outputs.get("officeHours", {}).get("standbyPool"):
        assert group["standbyPolicy"]["mode"] == "SCALE_OUT_POOL"
    else:
        assert group["standbyPolicy"] == {"mode": "MANUAL"} and group["targetStoppedSize"] == 0


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_autoscaler_follows_replicas_and_requests_per_vm(stack, plan_of):
    plan = plan_of(stack)
    replicas = config_of(stack)["replicas"]
    group, backend = plan.one(GROUP), plan.one(BACKEND)
    assert group["targetSize"] == replicas["desired"]
    (backend_group,) = backend["backends"]
    assert backend_group["balancingMode"] == "RATE"
    assert backend_group["maxRatePerInstance"] == pytest.approx(replicas.get("targetRequestsPerMinute", 30) / 60)
    autoscalers = plan.resources(AUTOSCALER)
    office_hours = config_of(stack).get("officeHours")
    if replicas["min"] == replicas["max"] and not office_hours:
        assert autoscalers == []
    else:
        (autoscaler,) = autoscalers
        policy = autoscaler["autoscalingPolicy"]
        # With officeHours, outside the windows the group may go down to offHoursReplicas; the scaling schedules
        # keep the office-hours VMs (tests/test_office_hours.py).
        floor = office_hours.get("offHoursReplicas", 0) if office_hours else replicas["min"]
        assert (policy["minReplicas"], policy["maxReplicas"]) == (floor, replicas["max"])
        # vLLM's signals, not the load balancer's utilization (tests/test_autoscaling.py)
        assert "loadBalancingUtilization" not in policy and len(policy["metrics"]) == 3
        assert autoscaler["target"] == f"{stack}-gpu-id"


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_backend_service_streams_long_generations_behind_cloud_armor(stack, plan_of):
    plan = plan_of(stack)
    backend = plan.one(BACKEND)
    assert backend["protocol"] == "HTTP" and backend["portName"] == "http"
    assert backend["timeoutSec"] >= 1200 and backend["connectionDrainingTimeoutSec"] >= 120
    assert backend["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    checks = plan.named(HEALTH_CHECK)
    assert checks[backend["healthChecks"].removesuffix("-id")]["httpHealthCheck"]["requestPath"] == "/health"
    (name, armor), = plan.named(ARMOR).items()
    assert backend["securityPolicy"].endswith(f"/{name}")
    not_api, *allows, deny = armor["rules"]
    # Every path but the API and /health (vLLM answers /invocations, /metrics... without the key) is refused at
    # the edge, ahead of the allow rules
    assert not_api["action"] == "deny(404)" and not_api["priority"] < min(rule["priority"] for rule in allows)
    assert not_api["match"]["expr"]["expression"] == f"!request.path.matches('{API_PATH}')"
    assert sorted(r for rule in allows for r in rule["match"]["config"]["srcIpRanges"]) == sorted(
        config_of(stack)["allowedCidrs"])
    assert all(rule["action"] == "allow" for rule in allows)
    assert deny["action"].startswith("deny") and deny["priority"] == 2147483647
    assert deny["match"]["config"]["srcIpRanges"] == ["*"]


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_vms_read_exactly_this_stacks_secrets_which_stay_out_of_metadata(stack, plan_of):
    plan = plan_of(stack)
    secrets = plan.named(SECRET)
    assert set(secrets) == {f"{stack}-apiKeys"} | ({f"{stack}-hfToken"} if "hfToken" in config_of(stack) else set())
    readers = plan.resources(SECRET_READER)
    assert sorted(r["secretId"] for r in readers) == sorted(s["secretId"] for s in secrets.values())
    assert {(r["role"], r["member"]) for r in readers} == {
        ("roles/secretmanager.secretAccessor", f"serviceAccount:{vm_service_account(plan)}")}
    # no project-wide grant but writing metrics, which Cloud Monitoring grants on the project only
    assert [(s["newState"]["inputs"]["role"], s["newState"]["inputs"]["member"]) for s in plan.steps
            if s["type"].startswith("gcp:projects/")] == [
        ("roles/monitoring.metricWriter", f"serviceAccount:{vm_service_account(plan)}")]
    assert [v["secretData"] for v in plan.resources(SECRET_VERSION)] == ["[secret]"] * len(secrets)
    # The VMs get the secrets' current versions, never their values.
    setup = write_files(plan.user_data)["/usr/local/sbin/vllm-fleet-setup"]["content"]
    for secret in secrets.values():
        assert re.search(rf"^readonly \w+_REF=projects/123456789012/secrets/{secret['secretId']}/versions/\d+$", setup,
                         re.M), secret
    template = json.dumps(plan.one(TEMPLATE))
    assert "offline-plan-secret-" not in template and "VLLM_API_KEY=" not in plan.user_data


def test_prod_is_https_on_a_managed_certificate_with_its_dns_record(plan_of):
    plan = plan_of("codellama-gcp")
    config = config_of("codellama-gcp")
    (certificate,) = plan.resources("gcp:compute/managedSslCertificate:ManagedSslCertificate")
    assert certificate["managed"]["domains"] == [config["domain"]]
    proxy = plan.one("gcp:compute/targetHttpsProxy:TargetHttpsProxy")
    assert proxy["sslCertificates"] == ["codellama-gcp-tls-id"] and proxy["sslPolicy"] == "codellama-gcp-tls-id"
    assert plan.one("gcp:compute/sSLPolicy:SSLPolicy")["minTlsVersion"] == "TLS_1_2"
    (rule,) = plan.resources("gcp:compute/globalForwardingRule:GlobalForwardingRule")
    assert rule["portRange"] == "443" and rule["target"] == "codellama-gcp-https-id"
    assert not plan.resources("gcp:compute/targetHttpProxy:TargetHttpProxy")
    record = plan.one("gcp:dns/recordSet:RecordSet")
    assert (record["managedZone"], record["name"], record["type"]) == (config["dnsZone"], f"{config['domain']}.", "A")
    assert record["rrdatas"] == ["192.0.2.10"]  # the load balancer's global address
    assert plan.outputs["endpoint"] == "https://codellama.example.com"


def test_dev_is_plain_http_with_a_loud_warning(plan_of):
    plan = plan_of("starcoder2-gcp-dev")
    (rule,) = plan.resources("gcp:compute/globalForwardingRule:GlobalForwardingRule")
    assert rule["portRange"] == "80"
    assert not plan.resources("gcp:compute/targetHttpsProxy:TargetHttpsProxy")
    assert any("plain HTTP" in w for w in plan.warnings) and any("plain HTTP" in w for w in plan.outputs["warnings"])
    assert plan.outputs["endpoint"] == "http://192.0.2.10"


def test_provider_uses_the_project_option_and_lowercase_labels(plan_of):
    provider = plan_of("codellama-gcp").one("pulumi:providers:gcp")
    assert provider["project"] == "my-gcp-project" and provider["region"] == "us-central1"
    labels = json.loads(provider["defaultLabels"]) if isinstance(provider["defaultLabels"], str) else provider["defaultLabels"]
    assert labels == {"managed-by": "vllm-fleet", "vllm-fleet-stack": "codellama-gcp", "team": "platform",
                      "cost-center": "dev-productivity"}


def test_prod_outputs_cost_tensor_parallelism_and_gpu_and_cpu_quota(plan_of):
    outputs = plan_of("codellama-gcp").outputs
    assert outputs["instanceType"] == "g2-standard-96" and outputs["gpuType"] == "L4"
    assert outputs["gpuCount"] == outputs["tensorParallelSize"] == 8
    cost = outputs["estimatedCost"]
    assert cost["usdPerHour"] == pytest.approx(8.00, abs=0.01)
    assert cost["usdPerHourAtMaxReplicas"] == pytest.approx(4 * 8.00333078, abs=0.01)
    quotas = {q["name"]: q for q in outputs["quota"]}
    assert list(quotas) == ["NVIDIA_L4_GPUS", "G2_CPUS", "GPUS_ALL_REGIONS", "CPUS_ALL_REGIONS"]
    assert (quotas["NVIDIA_L4_GPUS"]["scope"], quotas["NVIDIA_L4_GPUS"]["atMax"]) == ("us-central1", 32)
    assert (quotas["G2_CPUS"]["scope"], quotas["G2_CPUS"]["atDesired"]) == ("us-central1", 96)
    assert quotas["GPUS_ALL_REGIONS"]["scope"] == "global"
    # A proactive update adds one VM per zone (maxSurgeFixed) to the 4 at max replicas.
    zones = len(plan_of("codellama-gcp").one(GROUP)["distributionPolicyZones"])
    assert zones == plan_of("codellama-gcp").one(GROUP)["updatePolicy"]["maxSurgeFixed"] > 1
    assert quotas["NVIDIA_L4_GPUS"]["duringUpdate"] == (4 + zones) * 8
    assert quotas["NVIDIA_L4_GPUS"]["withPoolSetup"] == 8  # no standby pool for a 70B model (its setup is too long)


def test_dev_is_one_spot_l4_counted_against_the_preemptible_gpu_quota(plan_of):
    outputs = plan_of("starcoder2-gcp-dev").outputs
    assert outputs["spot"] is True and outputs["replicas"] == {"min": 1, "desired": 1, "max": 1}
    assert (outputs["instanceType"], outputs["gpuCount"]) == ("g2-standard-4", 1)
    assert [q["name"] for q in outputs["quota"]] == [
        "PREEMPTIBLE_NVIDIA_L4_GPUS", "G2_CPUS", "GPUS_ALL_REGIONS", "CPUS_ALL_REGIONS"]


@pytest.fixture(scope="module")
def custom_plan(tmp_path_factory) -> PlannedStack:
    """One stack with the options the issue stacks leave out: an existing network, IAP SSH, a gs:// model, both
    secrets from the stack file, more allowedCidrs than one Cloud Armor rule holds, a domain without dnsZone."""
    config = {"cloud": "gcp", "region": "us-east4", "model": "gs://acme-models/starcoder2-15b",
              "modelParams": {"like": "bigcode/starcoder2-15b"}, "maxModelLen": 8192,
              "allowedCidrs": [f"10.{i}.0.0/16" for i in range(12)], "domain": "code.example.com",
              "hfToken": {"secure": "AAABAKw0cWl5ZWtleQ=="}, "apiKey": {"secure": "AAABAJ+0aGVyZQ=="},
              "gcp": {"project": "my-project-123", "network": "shared-vpc", "subnetwork": "gpu-vms",
                      "cloudNat": False, "iapSsh": True, "zones": ["us-east4-c"]}}
    path = tmp_path_factory.mktemp("gcp") / "Pulumi.custom.yaml"
    path.write_text(yaml.safe_dump({"config": {f"vllm-fleet:{k}": v for k, v in config.items()}}))
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    return PlannedStack("custom", json.loads(result.stdout))


def test_existing_network_is_used_without_new_network_or_nat(custom_plan):
    types = {s["type"] for s in custom_plan.steps}
    assert not types & {"gcp:compute/network:Network", "gcp:compute/subnetwork:Subnetwork",
                        "gcp:compute/router:Router", "gcp:compute/routerNat:RouterNat"}
    assert {r["network"] for r in custom_plan.resources(FIREWALL)} == {"shared-vpc"}
    assert custom_plan.one(TEMPLATE)["networkInterfaces"] == [{"subnetwork": "gpu-vms"}]
    group = custom_plan.one(GROUP)
    assert group["distributionPolicyZones"] == ["us-east4-c"] and group["updatePolicy"]["maxSurgeFixed"] == 1


def test_iap_ssh_opens_22_to_the_iap_range_only(custom_plan):
    ssh = [r for r in custom_plan.resources(FIREWALL) if "22" in ports(r)]
    assert [(r["sourceRanges"], ports(r)) for r in ssh] == [([IAP_RANGE], {"22"})]


def test_both_secrets_and_the_bucket_are_granted_to_the_vms_only(custom_plan):
    readers = custom_plan.resources(SECRET_READER)
    assert sorted(r["secretId"] for r in readers) == ["vllm-fleet-custom-apiKeys", "vllm-fleet-custom-hfToken"]
    (bucket,) = custom_plan.resources("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert (bucket["bucket"], bucket["role"]) == ("acme-models", "roles/storage.objectViewer")
    assert bucket["member"] == f"serviceAccount:{vm_service_account(custom_plan)}"
    assert "fleet_fetch_weights \"$MODEL\"" in custom_plan.user_data and "gs://acme-models/starcoder2-15b" in custom_plan.user_data
    everything = json.dumps(custom_plan.preview)
    assert "offline-plan-secret-" not in everything and "HF_TOKEN=hf" not in custom_plan.user_data


def test_cloud_armor_splits_many_cidrs_into_rules_of_ten(custom_plan):
    _, *allows, _ = custom_plan.one(ARMOR)["rules"]
    assert [len(r["match"]["config"]["srcIpRanges"]) for r in allows] == [10, 2]
    assert len({r["priority"] for r in allows}) == 2


def test_a_domain_without_dns_zone_says_where_to_point_it(custom_plan):
    assert custom_plan.resources("gcp:dns/recordSet:RecordSet") == []
    assert any("point code.example.com (A record)" in w for w in custom_plan.outputs["warnings"])


@pytest.mark.parametrize("changes, key, words", [
    ({"gcp": {"project": "my-project-123", "sshKey": "x"}}, "gcp.sshKey", "is not a GCP option"),
    ({"gcp": None}, "gcp.project", "need the project"),
    ({"gcp": {"project": "My Project"}}, "gcp.project", "must be a project id"),
    ({"gcp": {"project": "my-project-123", "zones": ["us-central1-f"]}}, "gcp.zones",
     "offers no L4 GPUs (g2-standard-4); zones of us-central1 with L4: us-central1-a, us-central1-b, us-central1-c"),
    ({"gcp": {"project": "my-project-123", "zones": ["us-east1-b"]}}, "gcp.zones", "is not a zone of the stack's region"),
    ({"region": "us-west3", "accelerator": "L4"}, "accelerator", "us-west3 has no L4 (regions with it: asia-east1"),
    ({"gcp": {"project": "my-project-123", "network": "shared-vpc"}}, "gcp.subnetwork", "needs both network and subnetwork"),
    ({"gcp": {"project": "my-project-123", "network": "shared-vpc",
              "subnetwork": "projects/p/regions/us-east1/subnetworks/vms"}}, "gcp.subnetwork", "must be in the stack's region"),
    ({"gcp": {"project": "my-project-123", "subnetCidr": "8.8.0.0/16"}}, "gcp.subnetCidr", "valid subnet ranges"),
    ({"gcp": {"project": "my-project-123", "image": "ubuntu"}}, "gcp.image", "global/images/family/"),
    ({"gcp": {"project": "my-project-123", "iapSsh": "yes"}}, "gcp.iapSsh", "true or false"),
    ({"tags": {"Team": "Platform"}}, "tags.Team", "lowercase letters, digits, _ and -"),
    ({"domain": "code.example.com", "certificate": "arn:aws:acm:us-east-1:1:certificate/x"}, "certificate",
     "projects/<project>/global/sslCertificates/<name>"),
    ({"domain": "code.example.com", "dnsZone": "Z0123456789ABC"}, "dnsZone", "Cloud DNS managed zone"),
    ({"spot": True, "onDemandBase": 1, "replicas": {"min": 1, "max": 2}}, "onDemandBase", "cannot mix Spot"),
    ({"accelerator": "H100:1"}, "accelerator", "a3-highgpu-1g: sold only as spot VMs (set spot: true)"),
])
def test_bad_gcp_config_is_refused_with_key_value_and_what_works(changes, key, words):
    error = gcp_error(**changes)
    assert error.key == key and words in str(error), str(error)


def test_sizing_picks_the_cheapest_gpu_the_region_offers():
    from fleet.sizing import size

    # us-west3 has no L4: the 7B model goes on the cheapest fit the region has.
    assert size(gcp_spec(region="us-west3")).instance.name == "a2-highgpu-1g"
    assert size(gcp_spec(region="us-central1")).instance.gpu == "L4"


def test_an_instance_type_of_another_cloud_lists_the_gcp_machine_types():
    from fleet.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        gcp_spec(instanceType="g5.xlarge")
    assert caught.value.key == "instanceType"
    assert "g2-standard-4" in str(caught.value) and "a2-ultragpu-1g" in str(caught.value)


def test_good_options_parse_with_the_regions_gpu_zones():
    from components.gcp import parse_options

    from fleet.sizing import size

    spec = gcp_spec(region="europe-west4", gcp={"project": "my-project-123"})
    options = parse_options(spec, size(spec))
    assert options.project == "my-project-123" and options.zones == ("europe-west4-a", "europe-west4-b", "europe-west4-c")
    assert options.cloud_nat is True and options.iap_ssh is False and options.network is None


def test_a_bad_gcp_stack_file_prints_one_error_and_no_traceback(stack_file):
    path = stack_file({"cloud": "gcp", "region": "us-central1", "model": "bigcode/starcoder2-7b",
                       "allowedCidrs": ["10.0.0.0/8"], "gcp": {"zones": ["us-central1-a"]}})
    result = run_plan(path, fmt="text")
    assert result.returncode == 2 and result.stdout == ""
    assert "config vllm-fleet:gcp.project = (not set)" in result.stderr and "pulumi config set" in result.stderr
    assert "Traceback" not in result.stderr and "Nothing was planned or created." in result.stderr


def test_an_image_family_is_taken_with_a_warning_that_it_drifts(stack_file):
    path = stack_file({"cloud": "gcp", "region": "us-central1", "model": "codellama/CodeLlama-7b-Instruct-hf",
                       "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8"], "gcp": {
                           "project": "my-project-123",
                           "image": "projects/ubuntu-os-accelerator-images/global/images/family/ubuntu-accelerator-2204-amd64-with-nvidia-580"}})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    assert any("names an image family" in d["message"] for d in preview["diagnostics"])
