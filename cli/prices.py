"""Refreshes catalog/prices.yaml from the clouds' own public price lists: on-demand and spot $/hour of every
instance type of catalog/gpu-instances.yaml in every region of it, and (AWS, Azure) which regions offer each type.

    python -m cli.prices                       # all three clouds; writes catalog/prices.yaml
    python -m cli.prices --clouds azure --dry-run

- AWS: the Price List Query API (pricing:GetProducts, any AWS credentials; endpoint in us-east-1) for on-demand
  Linux/Shared/no pre-installed software, and EC2 DescribeSpotPriceHistory (the median over the region's zones of
  the latest spot price) in each region. Needs boto3 (in .venv: requirements-dev.txt).
- GCP: the Cloud Billing Catalog API (services/6F81-5844-456A/skus, an API key in GCP_API_KEY or --gcp-api-key):
  a machine type's price is its vCPUs x the family's core SKU + its memory x the RAM SKU + its GPUs x the GPU SKU
  of the region ("Spot Preemptible" SKUs for spot). Availability stays in gpu_zones of gpu-instances.yaml.
- Azure: the Retail Prices API (prices.azure.com/api/retail/prices, no key): Linux Consumption meters of each
  armSkuName; the "<size> Spot" meter is the spot price.

A region with no price for a type is left without it (AWS, Azure: the type is not offered there). Run by a
maintainer with network access; the parsing is unit-tested with recorded response samples (tests/data/prices/).
Not imported by the Pulumi program.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from fleet import catalog

GCP_COMPUTE_SERVICE = "6F81-5844-456A"
GCP_SKUS_URL = f"https://cloudbilling.googleapis.com/v1/services/{GCP_COMPUTE_SERVICE}/skus"
AZURE_PRICES_URL = "https://prices.azure.com/api/retail/prices"
AWS_PRICING_REGION = "us-east-1"  # the Price List Query API's endpoint
# GCP SKU descriptions: a machine family's vCPU and memory SKUs and each GPU's SKU (matched case-insensitively at
# the start of the description, after an optional "Spot Preemptible ").
GCP_FAMILY_SKUS = {"g2": "G2 Instance", "a2": "A2 Instance", "a3": "A3 Instance"}
GCP_GPU_SKUS = {"L4": "Nvidia L4 GPU", "A100-40GB": "Nvidia Tesla A100 GPU", "A100-80GB": "Nvidia Tesla A100 80GB GPU",
                "H100": "Nvidia H100 80GB GPU"}

Prices = dict[str, dict[str, tuple[float, float | None]]]  # region -> instance type -> (on-demand, spot)


# --- AWS ------------------------------------------------------------------------------------------------------
def aws_on_demand(products: Iterable[dict[str, Any] | str]) -> dict[str, float]:
    """Instance type -> on-demand $/hour from Price List products (GetProducts' PriceList items, JSON strings or
    parsed): Linux, shared tenancy, no pre-installed software, capacitystatus Used; the hourly price dimension."""
    found: dict[str, float] = {}
    for product in products:
        item = json.loads(product) if isinstance(product, str) else product
        attributes = item.get("product", {}).get("attributes", {})
        if (attributes.get("operatingSystem") != "Linux" or attributes.get("tenancy") != "Shared"
                or attributes.get("preInstalledSw") != "NA" or attributes.get("capacitystatus") != "Used"):
            continue
        for term in item.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = float(dimension.get("pricePerUnit", {}).get("USD", 0) or 0)
                if dimension.get("unit") in ("Hrs", "Hours") and usd > 0:
                    found[attributes["instanceType"]] = usd
    return found


def aws_spot(history: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Instance type -> the median over zones of each zone's latest spot price, from DescribeSpotPriceHistory's
    SpotPriceHistory items (Linux/UNIX)."""
    latest: dict[tuple[str, str], tuple[str, float]] = {}
    for item in history:
        if item.get("ProductDescription") not in ("Linux/UNIX", "Linux/UNIX (Amazon VPC)"):
            continue
        key = (item["InstanceType"], item["AvailabilityZone"])
        stamp = str(item.get("Timestamp", ""))
        if key not in latest or stamp > latest[key][0]:
            latest[key] = (stamp, float(item["SpotPrice"]))
    by_type: dict[str, list[float]] = {}
    for (itype, _zone), (_stamp, price) in latest.items():
        by_type.setdefault(itype, []).append(price)
    return {itype: round(statistics.median(prices), 4) for itype, prices in by_type.items()}


def fetch_aws(regions: list[str], types: list[str]) -> Prices:  # pragma: no cover - needs AWS and boto3
    import boto3

    pricing = boto3.client("pricing", region_name=AWS_PRICING_REGION)
    prices: Prices = {}
    for region in regions:
        products: list[str] = []
        for itype in types:
            filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in (
                ("instanceType", itype), ("regionCode", region), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
                ("preInstalledSw", "NA"), ("capacitystatus", "Used"))]
            for page in pricing.get_paginator("get_products").paginate(ServiceCode="AmazonEC2", Filters=filters):
                products.extend(page["PriceList"])
        on_demand = aws_on_demand(products)
        ec2 = boto3.client("ec2", region_name=region)
        history = []
        offered = sorted(on_demand)
        for start in range(0, len(offered), 20):
            pages = ec2.get_paginator("describe_spot_price_history").paginate(
                InstanceTypes=offered[start:start + 20], ProductDescriptions=["Linux/UNIX"],
                StartTime=datetime.datetime.now(datetime.timezone.utc))
            for page in pages:
                history.extend(page["SpotPriceHistory"])
        spot = aws_spot(history)
        prices[region] = {itype: (price, spot.get(itype)) for itype, price in sorted(on_demand.items())}
    return prices


# --- GCP ------------------------------------------------------------------------------------------------------
def _unit_price(sku: dict[str, Any]) -> float:
    rates = sku["pricingInfo"][0]["pricingExpression"]["tieredRates"]
    money = rates[-1]["unitPrice"]
    return int(money.get("units", 0) or 0) + int(money.get("nanos", 0) or 0) / 1e9


def gcp_components(skus: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str, bool], float]:
    """(region, family or GPU, "core" | "ram" | "gpu", spot) -> $/hour (a vCPU, a GiB, a GPU) from Cloud Billing
    SKUs of Compute Engine."""
    found: dict[tuple[str, str, str, bool], float] = {}
    for sku in skus:
        category = sku.get("category", {})
        usage = category.get("usageType")
        if usage not in ("OnDemand", "Preemptible") or category.get("resourceFamily") != "Compute":
            continue
        spot = usage == "Preemptible"
        description = re.sub(r"^Spot Preemptible ", "", sku.get("description", ""), flags=re.I)
        what = None
        for family, prefix in GCP_FAMILY_SKUS.items():
            for part in ("Core", "Ram"):
                if description.lower().startswith(f"{prefix} {part}".lower()):
                    what = (family, part.lower())
        for gpu, prefix in sorted(GCP_GPU_SKUS.items(), key=lambda kv: -len(kv[1])):
            if what is None and description.lower().startswith(prefix.lower()):
                what = (gpu, "gpu")
        if what is None:
            continue
        price = _unit_price(sku)
        for region in sku.get("serviceRegions", []):
            found[(region, what[0], what[1], spot)] = price
    return found


def gcp_prices(components: dict[tuple[str, str, str, bool], float], regions: list[str],
               instance_types: dict[str, catalog.InstanceType]) -> Prices:
    """Machine type prices: vCPUs x core + memory GiB x ram + GPUs x GPU SKU, in each region with all three."""
    prices: Prices = {}
    for region in regions:
        entries = {}
        for name, it in instance_types.items():
            family = name.split("-")[0]

            def total(spot: bool) -> float | None:
                parts = [components.get((region, family, "core", spot)), components.get((region, family, "ram", spot)),
                         components.get((region, it.gpu, "gpu", spot))]
                if any(part is None for part in parts):
                    return None
                return round(it.vcpus * parts[0] + it.memory_gib * parts[1] + it.gpu_count * parts[2], 5)

            on_demand = total(False)
            if on_demand is not None:
                entries[name] = (on_demand, total(True))
        if entries:
            prices[region] = entries
    return prices


def fetch_gcp(regions: list[str], api_key: str) -> Prices:  # pragma: no cover - needs the network and a key
    skus: list[dict[str, Any]] = []
    token = ""
    while True:
        query = urllib.parse.urlencode({"key": api_key, "pageSize": 5000, **({"pageToken": token} if token else {})})
        page = _get_json(f"{GCP_SKUS_URL}?{query}")
        skus.extend(page.get("skus", []))
        token = page.get("nextPageToken", "")
        if not token:
            break
    return gcp_prices(gcp_components(skus), regions, catalog.cloud("gcp").instance_types)


# --- Azure ----------------------------------------------------------------------------------------------------
def azure_prices(items: Iterable[dict[str, Any]], regions: list[str]) -> Prices:
    """Region -> size -> (on-demand, spot) from Retail Prices API items: Consumption meters per hour, Linux (the
    product name does not say Windows), the "<size> Spot" sku being the spot price; Low Priority is left out."""
    prices: dict[str, dict[str, list[float | None]]] = {}
    for item in items:
        if (item.get("type") != "Consumption" or "Windows" in item.get("productName", "")
                or item.get("unitOfMeasure") != "1 Hour" or item.get("armRegionName") not in regions):
            continue
        sku_name = item.get("skuName", "")
        if sku_name.endswith("Low Priority"):
            continue
        entry = prices.setdefault(item["armRegionName"], {}).setdefault(item["armSkuName"], [None, None])
        entry[1 if sku_name.endswith(" Spot") else 0] = float(item["retailPrice"])
    return {region: {size: (od, spot) for size, (od, spot) in sorted(sizes.items()) if od is not None}
            for region, sizes in sorted(prices.items())}


def fetch_azure(regions: list[str], sizes: list[str]) -> Prices:  # pragma: no cover - needs the network
    items: list[dict[str, Any]] = []
    for size in sizes:
        query = urllib.parse.urlencode({"$filter": f"serviceName eq 'Virtual Machines' and priceType eq "
                                                   f"'Consumption' and armSkuName eq '{size}'"})
        url: str | None = f"{AZURE_PRICES_URL}?{query}"
        while url:
            page = _get_json(url)
            items.extend(page.get("Items", []))
            url = page.get("NextPageLink")
    return azure_prices(items, regions)


def _get_json(url: str) -> dict[str, Any]:  # pragma: no cover - network
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https URLs of price APIs
        return json.load(response)


# --- the file -------------------------------------------------------------------------------------------------
SOURCES = {
    "aws": "AWS Price List Query API (pricing:GetProducts) and EC2 DescribeSpotPriceHistory",
    "gcp": f"Cloud Billing Catalog API, {GCP_SKUS_URL}",
    "azure": AZURE_PRICES_URL,
}
COMPLETE = {"aws": True, "gcp": False, "azure": True}


def render(clouds: dict[str, dict[str, Any]], header: str) -> str:
    """catalog/prices.yaml: the header comment, then each cloud's as_of, complete, source and regions."""
    lines = [header.rstrip("\n"), "clouds:"]
    for name, section in clouds.items():
        lines += [f"  {name}:", f"    as_of: \"{section['as_of']}\"", f"    complete: {str(section['complete']).lower()}"]
        lines += [f"    # {line}" for line in section.get("comment", "").splitlines()]
        lines += [f"    source: {section['source']}", "    regions:"]
        for region, types in section["regions"].items():
            lines.append(f"      {region}:")
            for itype, (od, spot) in types.items():
                lines.append(f"        {itype + ':':<27} [{od}, {'~' if spot is None else spot}]")
    return "\n".join(lines) + "\n"


def header_of(text: str) -> str:
    return text[:text.index("clouds:")] if "clouds:" in text else ""


def refresh(cloud_names: list[str], fetchers: dict[str, Callable[[], Prices]], today: str,
            path: Path = catalog.PRICES_FILE) -> str:
    """The new catalog/prices.yaml text: the named clouds fetched anew, the others as they were."""
    text = path.read_text()
    current = yaml.safe_load(text)["clouds"]
    clouds: dict[str, dict[str, Any]] = {}
    for name in catalog.clouds():
        if name in cloud_names:
            clouds[name] = {"as_of": today, "complete": COMPLETE[name], "source": SOURCES[name],
                            "comment": f"Written by python -m cli.prices on {today}.",
                            "regions": fetchers[name]()}
        else:
            old = current.get(name, {})
            clouds[name] = {"as_of": old.get("as_of", ""), "complete": old.get("complete", False),
                            "source": old.get("source", ""), "comment": "",
                            "regions": {r: {t: tuple(v) for t, v in types.items()}
                                        for r, types in (old.get("regions") or {}).items()}}
    return render(clouds, header_of(text))


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - needs the network
    parser = argparse.ArgumentParser(prog="make prices", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clouds", default="aws,gcp,azure")
    parser.add_argument("--gcp-api-key", default=os.environ.get("GCP_API_KEY", ""))
    parser.add_argument("--dry-run", action="store_true", help="print the file instead of writing it")
    args = parser.parse_args(argv)
    names = [c.strip() for c in args.clouds.split(",") if c.strip()]
    if "gcp" in names and not args.gcp_api_key:
        print("error: GCP needs an API key for the Cloud Billing Catalog API: GCP_API_KEY=... or --gcp-api-key",
              file=sys.stderr)
        return 2
    fetchers = {
        "aws": lambda: fetch_aws(list(catalog.cloud("aws").regions), sorted(catalog.cloud("aws").instance_types)),
        "gcp": lambda: fetch_gcp(list(catalog.cloud("gcp").regions), args.gcp_api_key),
        "azure": lambda: fetch_azure(list(catalog.cloud("azure").regions), sorted(catalog.cloud("azure").instance_types)),
    }
    text = refresh(names, fetchers, datetime.date.today().isoformat())
    if args.dry_run:
        print(text, end="")
    else:
        catalog.PRICES_FILE.write_text(text)
        print(f"wrote {catalog.PRICES_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
