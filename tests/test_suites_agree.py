"""The polars verdicts and Great Expectations' own counts agree exactly, expectation by expectation, on data
full of edge cases; and the suite's phone rule agrees with phonenumbers on realistic input."""

from __future__ import annotations

import random
from pathlib import Path

import phonenumbers
import polars as pl
import pytest

from fulfil_assets.stage.common import ORDER_COLUMNS, conform
from fulfil_assets.validate.gx_run import run_gx
from fulfil_assets.validate.mappings import load_bundles, load_service_codes, load_variant_skus
from fulfil_assets.validate.rules import check_orders, prepare_lines
from fulfil_assets.validate.suites import SuiteError, load_suite, row_failures

EDGE_TEXT = [
    None,
    "",
    " ",
    "  \t",
    "Zoë Ní Bhriain",
    "José 😀",
    "A" * 5000,
    "=cmd|' /C calc'!A0",
    "O'Brien",
    "北京",
    "\u200b",
    "line\nbreak",
]
PHONES = [
    None,
    "",
    " ",
    "n/a",
    "12345",
    "07911 123456",
    "+44 7911 123456",
    "+44 (0) 7911 123456",
    "0044 7911123456",
    "07911123456 ",
    "0161 496 0000",
    "+353 1 234 5678",
    "01 234 5678",
    "+1 212-555-0143",
    "(212) 555-0143",
    "+33 1 42 68 53 00",
    "0142685300",
    "+49 30 901820",
    "+4930901820",
    "07700 900123",
    "٠٧٩١١١٢٣٤٥٦",
    "+" * 40,
    "0" * 300,
]
POSTCODES = [
    None,
    "",
    " ",
    "SW1A 1AA",
    "sw1a1aa",
    " M1 1AE ",
    "SW1A 1A",
    "12345",
    "M60 1QDX",
    "D02X285",
    "D02 X285",
    "75008",
    "10117",
    "10001-1234",
    "1012 AB",
    "1012AB",
    "A" * 400,
    "ÉCOLE",
]
COUNTRIES = [None, "", "GB", "GB", "GB", "IE", "FR", "DE", "US", "NL", "ZZ", "JE", "gb"]
METHODS = [
    None,
    "",
    "Next Day",
    "next day",
    "Standard Delivery",
    " Standard Delivery",
    "Click & Collect",
    "International Tracked",
    "Royal Mail 48",
]
SKUS = [None, "", " ", "ABC123", "ABC-123", "abc 123", "ÄBC123", "A" * 40, "BUNDLE0001", "X1", "X2", "\u00a0X1"]
QTYS = [None, -1, 0, 1, 2, 10**9]


def edge_frames(n: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = random.Random(seed)
    orders, lines = [], []
    for i in range(n):
        system = rng.choice(["linnworks", "linnworks", "shopify", "bigcommerce"])
        orders.append(
            {
                "order_key": f"{system}:{i}",
                "source_system": system,
                "order_ref": f"R{i}",
                "paid": True,
                "status": "open",
                "ship_name": rng.choice(EDGE_TEXT + ["Ann"] * 5),
                "address1": rng.choice(EDGE_TEXT + ["1 High St"] * 5),
                "city": rng.choice(EDGE_TEXT + ["Leeds"] * 5),
                "postcode": rng.choice(POSTCODES),
                "country_code": rng.choice(COUNTRIES),
                "phone": rng.choice(PHONES),
                "shipping_method": rng.choice(METHODS),
            }
        )
        for line_no in range(1, rng.choice([0, 1, 1, 2, 3]) + 1):
            lines.append(
                {
                    "order_key": f"{system}:{i}",
                    "line_no": line_no,
                    "sku": rng.choice(SKUS),
                    "quantity": rng.choice(QTYS),
                    "source_variant_id": rng.choice([None, "111", "222", "999"]),
                }
            )
    return conform(pl.DataFrame(orders), ORDER_COLUMNS), pl.DataFrame(
        lines,
        schema={
            "order_key": pl.String,
            "line_no": pl.Int32,
            "sku": pl.String,
            "quantity": pl.Int64,
            "source_variant_id": pl.String,
        },
    )


@pytest.mark.parametrize("wms", ["whistl", "peoplevox"])
def test_polars_and_gx_agree_on_edge_cases(wms: str, tmp_path: Path) -> None:
    (tmp_path / "variant_skus.csv").write_text("system,variant_id,sku\nshopify,111,X1\nbigcommerce,222,ABC123\n")
    (tmp_path / "bundles.csv").write_text("bundle_sku,component_sku,quantity\nBUNDLE0001,X1,2\nBUNDLE0001,X2,1\n")
    orders, lines = edge_frames(3000, seed=hash(wms) % 1000)
    frame = prepare_lines(
        orders,
        lines,
        wms,
        load_service_codes(Path("expectations/service_codes.csv")),
        load_variant_skus(tmp_path / "variant_skus.csv"),
        load_bundles(tmp_path / "bundles.csv"),
    )
    suite = load_suite(wms)
    params = {"wms_catalogue": ["ABC123", "X1", "X2", "A" * 40]}
    failures = row_failures(frame, suite, params)
    gx = run_gx(frame, suite, params, tmp_path / "docs")
    ours = dict(failures.group_by("expectation").len().iter_rows())
    assert gx.errors == []
    assert {i: gx.unexpected[i] for i in gx.unexpected} == {i: ours.get(i, 0) for i in gx.unexpected}
    # Every rule actually fired somewhere, so agreement is not agreement on zero.
    fired = set(failures["reason_code"].unique())
    assert fired >= {
        "SKU_UNMAPPED_VARIANT",
        "SKU_INVALID_CHARS",
        "SKU_UNKNOWN_AT_WMS",
        "QUANTITY_INVALID",
        "PHONE_MISSING",
        "PHONE_INVALID",
        "POSTCODE_INVALID",
        "ADDRESS_INCOMPLETE",
        "SERVICE_UNMAPPED",
    }
    assert gx.docs_index is not None and gx.docs_index.exists()


def test_phone_rule_agrees_with_phonenumbers_on_realistic_input() -> None:
    from emulators.world import World

    world = World(3, 100)
    addresses = [world.address(random.Random(i)) for i in range(3000)]
    orders = conform(
        pl.DataFrame(
            [
                {
                    "order_key": f"linnworks:{i}",
                    "source_system": "linnworks",
                    "order_ref": str(i),
                    "paid": True,
                    "status": "open",
                    "phone": a.phone,
                    "country_code": a.country_code,
                    "ship_name": "A",
                    "address1": "B",
                    "city": "C",
                    "postcode": a.postcode,
                    "shipping_method": "Next Day",
                }
                for i, a in enumerate(addresses)
            ]
        ),
        ORDER_COLUMNS,
    )
    lines = pl.DataFrame({"order_key": orders["order_key"], "line_no": 1, "sku": "ABC1", "quantity": 1})
    _, verdicts = check_orders(
        prepare_lines(orders, lines, "whistl", load_service_codes(Path("expectations/service_codes.csv"))),
        load_suite("whistl"),
        {},
    )
    ours = dict(verdicts.filter(pl.col("rule") == "phone").select("order_key", "passed").iter_rows())
    disagree = []
    for i, a in enumerate(addresses):
        try:
            valid = bool(a.phone.strip()) and phonenumbers.is_valid_number(phonenumbers.parse(a.phone, a.country_code))
        except phonenumbers.NumberParseException:
            valid = False
        if ours[f"linnworks:{i}"] != valid:
            disagree.append((a.phone, a.country_code, ours[f"linnworks:{i}"], valid))
    assert disagree == []


def test_suite_loader_refuses_what_polars_cannot_execute(tmp_path: Path) -> None:
    (tmp_path / "whistl.json").write_text(
        '{"name": "x", "expectations": [{"type": "expect_column_mean_to_be_between",'
        ' "kwargs": {"column": "quantity"}, "meta": {}}]}'
    )
    with pytest.raises(SuiteError, match="type not supported"):
        load_suite("whistl", tmp_path)
    (tmp_path / "whistl.json").write_text("{not json")
    with pytest.raises(SuiteError, match="not valid JSON"):
        load_suite("whistl", tmp_path)


def test_the_shipped_suites_are_the_ones_the_rules_module_writes(tmp_path: Path) -> None:
    """One source for each rule: `expectations/*.json` as shipped is exactly what `fulfil_assets/validate/suites.py`
    writes (`python -m fulfil_assets.validate.suites`), so a rule changed in one place cannot drift from the other;
    the emulated Whistl's own rule is held to the suite by `test_rules_and_files.py`."""
    from fulfil_assets.validate.suites import EXPECTATIONS_DIR, write_suites

    written = write_suites(tmp_path)
    assert written
    for path in written:
        assert path.read_text() == (EXPECTATIONS_DIR / path.name).read_text(), f"{path.name}: regenerate the suites"
