"""Prices and availability per region (catalog/prices.yaml): what the plan charges and refuses, and the refresh
script's parsing of the clouds' price APIs (recorded samples of tests/data/prices/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fleet import catalog
from cli import prices
from fleet.errors import ConfigError
from fleet.outputs import cost
from fleet.sizing import size
from fleet.spec import parse_spec

DATA = Path(__file__).resolve().parent / "data" / "prices"


def spec(cloud: str, region: str, model: str = "codellama/CodeLlama-7b-Instruct-hf", **config):
    raw = {"cloud": cloud, "region": region, "model": model, "allowedCidrs": '["10.0.0.0/8"]',
           **{k: (v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()}}
    return parse_spec("t", raw, set())


def test_every_recorded_price_is_of_a_catalog_type_and_region_and_agrees_in_the_reference_region():
    document = yaml.safe_load(catalog.PRICES_FILE.read_text())["clouds"]
    assert set(document) == set(catalog.clouds())
    for name, section in document.items():
        cloud = catalog.cloud(name)
        assert section["as_of"] and section["source"].startswith("https://"), name
        for region, types in section["regions"].items():
            assert region in cloud.regions, (name, region)
            for itype, (on_demand, spot) in types.items():
                assert itype in cloud.instance_types, (name, region, itype)
                assert on_demand > 0 and (spot is None or 0 < spot < on_demand), (name, region, itype)
        for itype, it in cloud.instance_types.items():  # the reference prices of gpu-instances.yaml are the region's
            recorded = section["regions"].get(cloud.reference_region, {}).get(itype)
            if recorded:
                assert recorded[0] == pytest.approx(it.usd_per_hour, abs=0.005), (name, itype)


def test_the_plan_charges_the_stacks_region_and_names_it():
    ireland = spec("aws", "eu-west-1", maxModelLen="8192")
    sizing = size(ireland)
    # eu-west-1 has no g6 (L4): the 7B model goes on the cheapest A10G there, at Ireland's price.
    assert sizing.instance.name == "g5.xlarge" and sizing.instance.usd_per_hour == 1.123
    charged = cost(ireland, sizing)
    assert charged["usdPerHour"] == 1.12 and charged["region"] == charged["priceRegion"] == "eu-west-1"
    assert "g5.xlarge in eu-west-1, prices of 2026-11-25" in charged["basis"]
    # The same stack in us-east-1 runs g6.xlarge at us-east-1's price.
    virginia = size(spec("aws", "us-east-1", maxModelLen="8192"))
    assert (virginia.instance.name, virginia.instance.usd_per_hour) == ("g6.xlarge", 0.8048)


def test_a_gcp_region_prices_its_l4s_at_its_own_rate():
    # us-east4's L4 is cheaper than us-central1's: g2-standard-96 = 3.51147 + 8 x 0.55821 (the seed table's 7.98).
    cloud = catalog.cloud("gcp")
    g2_96 = cloud.instance_types["g2-standard-96"]
    assert cloud.price(g2_96, "us-east4").usd_per_hour == pytest.approx(7.97715)
    assert cloud.price(g2_96, "us-central1").usd_per_hour == pytest.approx(8.00333, abs=1e-4)
    assert cloud.price(g2_96, "europe-west4").usd_per_hour > 8.0


def test_a_type_the_region_lacks_is_refused_by_name():
    with pytest.raises(ConfigError) as caught:
        size(spec("aws", "eu-west-1", instanceType="g6e.12xlarge", model="codellama/CodeLlama-70b-Instruct-hf"))
    assert caught.value.key == "instanceType"
    assert "eu-west-1 does not offer g6e.12xlarge (regions with it: ap-northeast-1, eu-central-1" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        size(spec("azure", "centralus", accelerator="H100-NVL"))
    assert "centralus does not offer Standard_NC40ads_H100_v5" in str(caught.value)


def test_a_region_without_recorded_prices_uses_the_reference_price_and_says_so():
    europe = spec("azure", "westeurope", model="codellama/CodeLlama-70b-Instruct-hf")
    sizing = size(europe)
    assert sizing.price.region == "eastus" and not sizing.price.regional
    charged = cost(europe, sizing)
    assert charged["priceRegion"] == "eastus" and "in eastus (no price recorded for westeurope)" in charged["basis"]


def test_gcp_europe_west4_prices_its_a100s_and_h100s_at_its_own_rate():
    # catalog/prices.yaml: pricing.yml of Cyclenerd/google-cloud-pricing-cost-calculator (Cloud Billing catalog API).
    sized = size(spec("gcp", "europe-west4", "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", accelerator="A100-80GB:1"))
    assert (sized.instance.name, sized.price.region, sized.price.regional) == ("a2-ultragpu-1g", "europe-west4", True)
    assert sized.instance.usd_per_hour == pytest.approx(5.58091848)
    gcp = catalog.cloud("gcp")
    for name in ("a2-highgpu-8g", "a2-ultragpu-8g", "a3-highgpu-8g"):
        here, reference = gcp.price(gcp.instance_types[name], "europe-west4"), gcp.instance_types[name].usd_per_hour
        assert here.regional and reference < here.usd_per_hour < 1.3 * reference, name


def test_the_plan_warns_when_the_region_has_no_recorded_price(stack_file):
    from conftest import run_plan

    path = stack_file({"cloud": "azure", "region": "westeurope", "model": "Qwen/Qwen2.5-Coder-7B-Instruct",
                       "maxModelLen": 16384, "allowedCidrs": ["10.0.0.0/8"]})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    warnings = [d["message"] for d in plan["diagnostics"]]
    assert any("records no price of Standard_NC24ads_A100_v4 in westeurope: the cost shown is eastus's" in w
               for w in warnings), warnings
    assert plan["outputs"]["estimatedCost"]["priceRegion"] == "eastus"


# --- the refresh script's parsing ------------------------------------------------------------------------------
def test_aws_price_list_products_give_the_linux_shared_on_demand_price():
    products = json.loads((DATA / "aws_products.json").read_text())
    assert prices.aws_on_demand(products) == {"g6e.12xlarge": 11.12975, "g5.xlarge": 1.067}


def test_aws_spot_history_gives_the_median_of_each_zones_latest_price():
    history = json.loads((DATA / "aws_spot_history.json").read_text())["SpotPriceHistory"]
    # zones a (latest 2.1614, not the older 3.5), b 3.0207, c 2.8; Windows left out
    assert prices.aws_spot(history) == {"g6e.12xlarge": 2.8, "g5.xlarge": 0.3345}


def test_gcp_billing_skus_add_up_to_the_machine_price():
    skus = json.loads((DATA / "gcp_skus.json").read_text())["skus"]
    components = prices.gcp_components(skus)
    assert components[("us-central1", "L4", "gpu", False)] == pytest.approx(0.56004)
    assert components[("us-central1", "L4", "gpu", True)] == pytest.approx(0.2231)
    assert components[("us-central1", "g2", "core", False)] == pytest.approx(0.024)  # not the 1-year commitment
    found = prices.gcp_prices(components, ["us-central1", "us-east1", "europe-west4"],
                              catalog.cloud("gcp").instance_types)
    # 4 vCPUs x 0.024 + 16 GiB x 0.003174517 + 1 L4 x 0.56004 = 0.70683, the catalog's g2-standard-4
    assert found["us-central1"]["g2-standard-4"][0] == pytest.approx(0.70683, abs=1e-5)
    assert found["us-central1"]["g2-standard-4"][1] is None  # no spot core/RAM SKU in the sample
    assert found["us-east1"]["g2-standard-96"][0] == pytest.approx(96 * 0.024 + 384 * 0.003174517 + 8 * 0.56004,
                                                                   abs=1e-5)
    assert "europe-west4" not in found and "a2-highgpu-1g" not in found["us-central1"]


def test_azure_retail_prices_give_linux_on_demand_and_spot_per_region():
    items = json.loads((DATA / "azure_retail_prices.json").read_text())["Items"]
    assert prices.azure_prices(items, ["eastus", "southcentralus", "westeurope"]) == {
        "eastus": {"Standard_NC48ads_A100_v4": (7.346, 0.888866)},
        "southcentralus": {"Standard_NC48ads_A100_v4": (8.815, None)},
    }


def test_a_refresh_rewrites_the_named_clouds_and_keeps_the_others(tmp_path, monkeypatch):
    copy = tmp_path / "prices.yaml"
    copy.write_text(catalog.PRICES_FILE.read_text())
    fetched = {"eastus": {"Standard_NC48ads_A100_v4": (7.5, 0.9)}}
    text = prices.refresh(["azure"], {"azure": lambda: fetched}, "2027-01-02", path=copy)
    document = yaml.safe_load(text)
    assert text.startswith("# Hourly prices of the instance types")  # the header comment stays
    assert document["clouds"]["azure"] == {"as_of": "2027-01-02", "complete": True, "source": prices.SOURCES["azure"],
                                           "regions": {"eastus": {"Standard_NC48ads_A100_v4": [7.5, 0.9]}}}
    before = yaml.safe_load(catalog.PRICES_FILE.read_text())["clouds"]
    assert document["clouds"]["aws"] == before["aws"] and document["clouds"]["gcp"] == before["gcp"]
    # what the refresh writes, the catalog reads
    monkeypatch.setattr(catalog, "PRICES_FILE", copy)
    copy.write_text(text)
    catalog._prices.cache_clear()
    catalog.cloud.cache_clear()
    try:
        azure = catalog.cloud("azure")
        assert azure.price(azure.instance_types["Standard_NC48ads_A100_v4"], "eastus").usd_per_hour == 7.5
        assert azure.unavailable(azure.instance_types["Standard_NC24ads_A100_v4"], "eastus", False)
    finally:
        catalog._prices.cache_clear()
        catalog.cloud.cache_clear()
