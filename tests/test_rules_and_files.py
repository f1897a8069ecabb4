"""Pure business logic, without Dagster: the order rules, mapping tables, config, WMS file parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from fulfil_assets.config import ConfigError, load_config
from fulfil_assets.despatch.matching import match_despatches
from fulfil_assets.despatch.tracking import tracking_intents
from fulfil_assets.push.whistl_order_files import order_file_rows, render_csv
from fulfil_assets.stage.common import ORDER_COLUMNS, conform
from fulfil_assets.validate.mappings import MappingError, load_bundles, load_service_codes, load_variant_skus
from fulfil_assets.validate.rules import check_orders, merge_exceptions, prepare_lines, wms_ready_orders
from fulfil_assets.validate.suites import load_suite
from fulfil_assets.whistl_formats import (
    ORDER_FILE_COLUMNS,
    FileFormatError,
    parse_despatch_file,
    parse_rejection_file,
)

SERVICE_MAP = load_service_codes(Path("expectations/service_codes.csv"))
SUITES = {wms: load_suite(wms) for wms in ("whistl", "peoplevox")}


def verdicts_for(
    orders: pl.DataFrame,
    lines: pl.DataFrame,
    catalogue: list[str] | None = None,
    wms: str = "whistl",
    **maps: pl.DataFrame,
) -> pl.DataFrame:
    frame = prepare_lines(orders, lines, wms, SERVICE_MAP, maps.get("variants"), maps.get("bundles"))
    params = {"wms_catalogue": catalogue} if catalogue is not None else {}
    return check_orders(frame, SUITES[wms], params)[1]


GOOD = {
    "source_system": "linnworks",
    "paid": True,
    "status": "open",
    "ship_name": "Ann Smith",
    "address1": "1 High Street",
    "city": "Leeds",
    "postcode": "LS1 4AP",
    "country_code": "GB",
    "phone": "07911 123456",
    "email": "ann@example.co.uk",
    "shipping_method": "Next Day",
    "order_ref": "LW1",
    "created_at": datetime(2026, 11, 20, tzinfo=UTC),
}


def orders_frame(*changes: dict) -> pl.DataFrame:
    rows = [{**GOOD, "order_key": f"linnworks:{i}", **c} for i, c in enumerate(changes)]
    return conform(pl.DataFrame(rows), ORDER_COLUMNS)


def lines_frame(rows: list[tuple[int, int, str, int | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"order_key": f"linnworks:{o}", "line_no": n, "sku": s, "quantity": q} for o, n, s, q in rows],
        schema={"order_key": pl.String, "line_no": pl.Int32, "sku": pl.String, "quantity": pl.Int64},
    )


def failures(
    orders: pl.DataFrame, lines: pl.DataFrame, catalogue: list[str] | None = None, wms: str = "whistl"
) -> dict[str, set[str]]:
    v = verdicts_for(orders, lines, catalogue, wms)
    out: dict[str, set[str]] = {}
    for row in v.filter(~pl.col("passed")).iter_rows(named=True):
        assert row["detail"] and row["owner"] in {"office", "cx", "warehouse"}
        out.setdefault(row["order_key"], set()).add(row["reason_code"])
    return out


def test_each_reason_code_and_a_clean_order() -> None:
    orders = orders_frame(
        {},
        {"phone": ""},
        {"phone": "12345"},
        {"postcode": "SW1A 1A"},
        {"city": "  "},
        {"shipping_method": "Click & Collect"},
        {"shipping_method": "next day"},
        {},
        {},
        {},
        {
            "phone": "+353 1 234 5678",
            "country_code": "IE",
            "postcode": "D02X285",
            "shipping_method": "International Tracked",
        },
    )
    lines = lines_frame(
        [
            (0, 1, "ABC123", 1),
            (1, 1, "ABC123", 1),
            (2, 1, "ABC123", 1),
            (3, 1, "ABC123", 1),
            (4, 1, "ABC123", 1),
            (5, 1, "ABC123", 1),
            (6, 1, "ABC123", 1),
            (7, 1, "ABC123", 1),
            (7, 2, "ABC-123", 1),
            (8, 1, "ABC123", 0),
            (9, 1, "ZZZ999", 2),
            (10, 1, "ABC123", 1),
        ]
    )
    got = failures(orders, lines, catalogue=["ABC123", "ABC-123"])
    assert got == {
        "linnworks:1": {"PHONE_MISSING"},
        "linnworks:2": {"PHONE_INVALID"},
        "linnworks:3": {"POSTCODE_INVALID"},
        "linnworks:4": {"ADDRESS_INCOMPLETE"},
        "linnworks:5": {"SERVICE_UNMAPPED"},
        "linnworks:6": {"SERVICE_UNMAPPED"},  # exact mapping: case matters
        "linnworks:7": {"SKU_INVALID_CHARS"},
        "linnworks:8": {"QUANTITY_INVALID"},
        "linnworks:9": {"SKU_UNKNOWN_AT_WMS"},
    }


def test_postcodes_normalise_and_unicode_blanks_do_not_crash() -> None:
    orders = orders_frame(
        {"postcode": " ls14ap "},
        {"postcode": "m11ae"},
        {"postcode": None},
        {"ship_name": "Zoë Ní Bhriain", "address1": "Flat 2, 1 Straße"},
        {"postcode": "X" * 500},
    )
    prepared = prepare_lines(orders, lines_frame([(0, 1, "A1", 1)]), "whistl", SERVICE_MAP).unique("order_key")
    assert prepared.sort("order_key")["postcode_norm"].to_list()[:2] == ["LS1 4AP", "M1 1AE"]
    lines = lines_frame([(i, 1, "ABC123", 1) for i in range(5)])
    assert failures(orders, lines) == {"linnworks:2": {"POSTCODE_INVALID"}, "linnworks:4": {"POSTCODE_INVALID"}}


def test_one_bad_line_holds_the_order_and_only_paid_open_orders_are_ready() -> None:
    orders = orders_frame({}, {"paid": False}, {"status": "cancelled"}, {})
    lines = lines_frame(
        [(0, 1, "ABC123", 1), (1, 1, "ABC123", 1), (2, 1, "ABC123", 1), (3, 1, "ABC123", 1), (3, 2, "AB_C", 1)]
    )
    v = verdicts_for(orders, lines)
    assert wms_ready_orders(orders, v)["order_key"].to_list() == ["linnworks:0"]


def test_exceptions_keep_first_seen_and_resolve_when_fixed() -> None:
    t1, t2 = datetime(2026, 11, 20, 9, tzinfo=UTC), datetime(2026, 11, 20, 10, tzinfo=UTC)
    lines = lines_frame([(0, 1, "ABC123", 1)])
    v1 = verdicts_for(orders_frame({"phone": ""}), lines)
    ex1 = merge_exceptions(pl.DataFrame(), v1, t1)
    assert ex1.select("reason_code", "first_seen", "resolved_at").row(0) == ("PHONE_MISSING", t1, None)
    v2 = verdicts_for(orders_frame({"phone": ""}), lines)
    assert merge_exceptions(ex1, v2, t2).select("first_seen", "last_seen").row(0) == (t1, t2)
    v3 = verdicts_for(orders_frame({}), lines)
    assert merge_exceptions(ex1, v3, t2).select("resolved_at").row(0) == (t2,)


def test_service_map_loader_names_file_line_and_problem(tmp_path: Path) -> None:
    bad = tmp_path / "service_codes.csv"
    header = "system,shipping_method,wms,service_code\n"
    cases = {
        header
        + "linnworks,Next Day,whistl,WHISTL-T24\nlinnworks,Next Day,whistl,WHISTL-T48\n": "line 3: duplicate of line 2",
        header + "linnworks,Next Day,whistl,WHISTL-T99\n": "line 2: 'WHISTL-T99' is not a whistl service code",
        header + "linnworks,,whistl,WHISTL-T24\n": "line 2: blank shipping_method",
        header + "amazon,Next Day,whistl,WHISTL-T24\n": "line 2: unknown system 'amazon'",
        "system,method,wms\n": "line 1: header must be",
    }
    for text, message in cases.items():
        bad.write_text(text)
        with pytest.raises(MappingError, match=message):
            load_service_codes(bad)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "fulfil.yaml"
    path.write_text("flows: [linnworks_whistl]\nsystems:\n  linnworks: {base_url: http://x}\n")
    with pytest.raises(ConfigError, match=r"flow linnworks_whistl needs systems\.whistl"):
        load_config(path)
    path.write_text(
        "flows: [linnworks_whistl]\nsystems:\n  linnworks: {base_url: http://x, budget_share: 2}\n"
        "  whistl: {drop_url: /tmp/x}\n"
    )
    with pytest.raises(ConfigError, match=r"systems.linnworks.budget_share: Input should be less than or equal to 1"):
        load_config(path)
    path.write_text("flows: [linnworks_whistl]\nsystems:\n  whistl: {drop_url: /tmp/x, colour: red}\n")
    with pytest.raises(ConfigError, match=r"systems\.whistl\.colour: unknown key"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    shipped = load_config(Path("fulfil.yaml"))
    assert shipped.flows == [
        "linnworks_whistl",
        "cin7_whistl",
        "bigcommerce_whistl",
        "linnworks_peoplevox",
        "shopify_linnworks",
    ]
    assert set(shipped.routes) == {"linnworks_peoplevox"}


def test_order_file_has_the_contract_columns_and_normalised_values() -> None:
    orders = orders_frame({}).with_columns(
        pl.lit("WHISTL-T24").alias("service_code"),
        pl.lit("07700900123").alias("phone_normalised"),
        pl.lit("LS1 4AP").alias("postcode_normalised"),
    )
    text = render_csv(order_file_rows(orders, lines_frame([(0, 2, "B1", 3), (0, 1, "A1", 1)])), ORDER_FILE_COLUMNS)
    rows = text.decode().splitlines()
    assert rows[0] == ",".join(ORDER_FILE_COLUMNS)
    assert rows[1].startswith(
        "LW1,2026-11-20T00:00:00Z,WHISTL-T24,Ann Smith,1 High Street,,,Leeds,LS1 4AP,GB,07700900123"
    )
    assert rows[1].endswith(",1,A1,1") and rows[2].endswith(",2,B1,3")


DESPATCH_HEADER = (
    "order_reference,despatch_reference,line_number,sku,quantity_ordered,quantity_despatched,carrier,"
    "service_code,tracking_number,tracking_url,parcel_number,despatched_at,partial_flag,reason\n"
)


def test_despatch_parse_keeps_good_rows_and_quarantines_bad_ones() -> None:
    data = (
        DESPATCH_HEADER
        + "LW1,D1,1,A1,2,2,Whistl,WHISTL-T24,WHL1,,1,2026-11-20T10:00:00Z,N,\n"
        + "LW1,D1,2,B1,1,one,Whistl,WHISTL-T24,WHL1,,1,2026-11-20T10:00:00Z,N,\n"
        + "LW2,D2,1,A1,1,1,Whistl,WHISTL-T24,,,1,2026-11-20T10:00:00Z,N,\n"
        + "LW3,D3,1,A1,1,1,Whistl,WHISTL-T24,WHL3,,1,yesterday,N,\n"
    ).encode()
    rows, bad = parse_despatch_file(data, "shp_1.csv")
    assert rows.select("order_ref", "line_no", "quantity").rows() == [("LW1", 1, 2)]
    assert sorted(bad["reason"].to_list()) == sorted(
        [
            "quantity_despatched 'one' is not a whole number",
            "despatched quantity without a tracking number",
            "despatched_at 'yesterday' is not an ISO 8601 time",
        ]
    )
    with pytest.raises(FileFormatError, match="missing columns"):
        parse_despatch_file(b"order_reference,sku\nLW1,A1\n", "shp_2.csv")
    with pytest.raises(FileFormatError, match="not UTF-8"):
        parse_despatch_file(b"\xff\xfe\x00garbage", "shp_3.csv")


def test_despatch_matching_flags_unknown_orders_and_over_shipping_and_plans_posts() -> None:
    data = (
        DESPATCH_HEADER
        + "LW1,D1,1,A1,2,1,Whistl,WHISTL-T24,WHL1,,1,2026-11-20T10:00:00Z,Y,\n"
        + "LW1,D1,1,A1,2,0,Whistl,WHISTL-T24,WHL2,,2,2026-11-20T10:00:00Z,Y,\n"
        + "LW2,D2,1,A1,1,3,Whistl,WHISTL-T24,WHL3,,1,2026-11-20T10:00:00Z,N,\n"
        + "ZZ9,D9,1,A1,1,1,Whistl,WHISTL-T24,WHL9,,1,2026-11-20T10:00:00Z,N,\n"
        + "LW3,D3,1,A1,1,1,Whistl,WHISTL-T24,WHL4,,1,2026-11-20T10:00:00Z,N,\n"
        + "LW3,D3,7,B9,1,1,Whistl,WHISTL-T24,WHL4,,1,2026-11-20T10:00:00Z,N,\n"
    ).encode()
    rows, _ = parse_despatch_file(data, "shp_1.csv")
    sent = pl.DataFrame(
        {"order_ref": ["LW1", "LW2", "LW3"], "order_key": ["linnworks:1", "linnworks:2", "linnworks:3"]}
    )
    lines = pl.DataFrame(
        {
            "order_key": ["linnworks:1", "linnworks:2", "linnworks:3"],
            "line_no": [1, 1, 1],
            "sku": ["A1", "A1", "A1"],
            "quantity": [2, 1, 1],
        }
    )
    matched, problems = match_despatches(rows, sent, lines, pl.DataFrame())
    assert dict(problems.select("order_key", "reason_code").rows()) == {
        "whistl:ZZ9": "DESPATCH_UNKNOWN_ORDER",
        "linnworks:2": "DESPATCH_OVER_QUANTITY",
        "linnworks:3": "DESPATCH_UNKNOWN_LINE",  # its own reason, not over-quantity
    }
    assert problems.filter(pl.col("order_key") == "linnworks:3")["detail"].to_list() == [
        "line 7 (B9): shipped 1, but the order fulfil sent has no such line"
    ]
    owners = pl.DataFrame(
        {"order_key": ["linnworks:1"], "oms": ["linnworks"], "source_order_id": ["1"], "flow": ["linnworks_whistl"]}
    )
    intents = tracking_intents(matched.filter(pl.col("order_key") == "linnworks:1"), lines, owners)
    assert intents.select("kind", "tracking_number").rows() == [("tracking", "WHL1")]  # partial: no process yet
    assert intents.select("idempotency_key", "target", "flow").row(0)[1:] == ("linnworks", "linnworks_whistl")
    assert json.loads(intents["payload"][0]) == {"kind": "tracking", "order_id": "1", "tracking_number": "WHL1"}


def test_rejection_file_maps_whistl_codes() -> None:
    data = b"order_reference,reason_code,detail,source_file\nLW1,SKU_UNKNOWN,line 1,ord.csv\nLW2,ODD,x,ord.csv\n"
    assert parse_rejection_file(data)["reason_code"].to_list() == ["SKU_UNKNOWN_AT_WMS", "WMS_REJECTED"]


def test_bundles_expand_and_storefront_variants_map(tmp_path: Path) -> None:
    (tmp_path / "bundles.csv").write_text("bundle_sku,component_sku,quantity\nGIFT1,MUG1,2\nGIFT1,TEE1,1\n")
    (tmp_path / "variant_skus.csv").write_text("system,variant_id,sku\nshopify,555,GIFT1\n")
    orders = orders_frame({}, {"source_system": "shopify"}, {"source_system": "shopify"})
    lines = pl.DataFrame(
        {
            "order_key": ["linnworks:0", "linnworks:1", "linnworks:2"],
            "line_no": [1, 1, 1],
            "sku": ["GIFT1", "whatever", None],
            "quantity": [3, 1, 1],
            "source_variant_id": [None, "555", "777"],
        }
    ).with_columns(pl.col("order_key").str.replace("linnworks:1", "shopify:1").str.replace("linnworks:2", "shopify:2"))
    orders = orders.with_columns(
        pl.col("order_key").str.replace("linnworks:1", "shopify:1").str.replace("linnworks:2", "shopify:2")
    )
    frame = prepare_lines(
        orders,
        lines,
        "whistl",
        SERVICE_MAP,
        load_variant_skus(tmp_path / "variant_skus.csv"),
        load_bundles(tmp_path / "bundles.csv"),
    )
    wms_lines = frame.select("order_key", "wms_line_no", "wms_sku", "quantity").sort("order_key", "wms_line_no").rows()
    assert wms_lines == [
        ("linnworks:0", 1, "MUG1", 6),
        ("linnworks:0", 2, "TEE1", 3),
        ("shopify:1", 1, "MUG1", 2),
        ("shopify:1", 2, "TEE1", 1),
        ("shopify:2", 1, None, 1),
    ]
    _, verdicts = check_orders(frame, SUITES["whistl"], {"wms_catalogue": ["MUG1", "TEE1"]})
    failing = verdicts.filter(~pl.col("passed")).select("order_key", "reason_code").rows()
    # (Shopify orders go to Linnworks, not Whistl, so service_codes.csv rightly has no Shopify->Whistl row.)
    assert sorted(failing) == [
        ("shopify:1", "SERVICE_UNMAPPED"),
        ("shopify:2", "SERVICE_UNMAPPED"),
        ("shopify:2", "SKU_INVALID_CHARS"),
        ("shopify:2", "SKU_UNMAPPED_VARIANT"),
    ]


def test_bundle_and_variant_loaders_name_the_problem(tmp_path: Path) -> None:
    f = tmp_path / "bundles.csv"
    for text, message in {
        "bundle_sku,component_sku,quantity\nB1,B1,1\n": "line 2: bundle 'B1' cannot contain itself",
        "bundle_sku,component_sku,quantity\nB1,C1,0\n": "line 2: quantity '0' must be a whole number of at least 1",
        "bundle_sku,component_sku,quantity\nB1,C1,1\nB1,C1,2\n": "line 3: duplicate of line 2",
        "bundle_sku,component_sku,quantity\nB1,B2,1\nB2,C1,1\n": "bundles inside bundles",
    }.items():
        f.write_text(text)
        with pytest.raises(MappingError, match=message):
            load_bundles(f)
    v = tmp_path / "variant_skus.csv"
    v.write_text("system,variant_id,sku\nshopify,1,A\nshopify,1,B\n")
    with pytest.raises(MappingError, match="line 3: duplicate of line 2 for shopify/1"):
        load_variant_skus(v)


def test_each_reason_code_at_peoplevox() -> None:
    """Peoplevox takes hyphens and spaces-free printable SKUs up to 30 characters, and its own service names."""
    orders = orders_frame(
        {},
        {"phone": ""},
        {"phone": "n/a"},
        {"postcode": "LS1"},
        {"ship_name": None},
        {"shipping_method": "Royal Mail 48 "},
        {},
        {},
        {},
    )
    lines = lines_frame(
        [
            (0, 1, "ABC-123", 1),
            (1, 1, "ABC-123", 1),
            (2, 1, "ABC-123", 1),
            (3, 1, "ABC-123", 1),
            (4, 1, "ABC-123", 1),
            (5, 1, "ABC-123", 1),
            (6, 1, "ABC 123", 1),
            (7, 1, "NOPE1", 1),
            (8, 1, "ABC-123", -2),
        ]
    )
    got = failures(orders, lines, catalogue=["ABC-123", "ABC 123"], wms="peoplevox")
    assert got == {
        "linnworks:1": {"PHONE_MISSING"},
        "linnworks:2": {"PHONE_INVALID"},
        "linnworks:3": {"POSTCODE_INVALID"},
        "linnworks:4": {"ADDRESS_INCOMPLETE"},
        "linnworks:5": {"SERVICE_UNMAPPED"},
        "linnworks:6": {"SKU_INVALID_CHARS"},
        "linnworks:7": {"SKU_UNKNOWN_AT_WMS"},
        "linnworks:8": {"QUANTITY_INVALID"},
    }
    frame = prepare_lines(orders.head(1), lines.head(1), "peoplevox", SERVICE_MAP)
    assert frame["service_code"].to_list() == ["DPD Next Day"]


def test_the_whistl_sku_rule_in_the_suite_is_the_one_the_warehouse_applies(tmp_path: Path) -> None:
    """The suite file ops edit (`expectations/whistl.json`, what runs) and the emulated Whistl refuse exactly the
    same SKUs: letters and digits, 1 to 30 of them."""
    import json
    import re

    from emulators.server import EmulatorConfig, Emulators

    suite = json.loads((Path(__file__).parent.parent / "expectations" / "whistl.json").read_text())
    regex = next(
        e["kwargs"]["regex"] for e in suite["expectations"] if e["type"] == "expect_column_values_to_match_regex"
    )
    emu = Emulators(EmulatorConfig(data_dir=tmp_path, n_orders=1, n_skus=10, ports={}))
    samples = ["ABC123", "A" * 30, "A" * 31, "", "ABC-123", "ABC_123", "ABC 123", "abc", "١٢٣", "ÄBC", "SKU.1"]
    for sku in samples:
        assert bool(re.fullmatch(regex, sku)) == bool(emu.whistl.sku_re.match(sku)), sku


def test_an_unpaid_storefront_order_waits_for_its_location_and_a_paid_one_is_held_without_one() -> None:
    """Linnworks as the target: a paid order with no fulfilment location, or an unmapped one, is
    `LOCATION_UNMAPPED`; an unpaid one with none read yet (its fulfilment orders are read once paid) is not."""
    shopify = {"source_system": "shopify", "shipping_method": "Next Day"}
    orders = orders_frame(
        {**shopify, "paid": True, "fulfilment_location": "71000001"},
        {**shopify, "paid": True, "fulfilment_location": None},
        {**shopify, "paid": False, "fulfilment_location": None},
        {**shopify, "paid": True, "fulfilment_location": "99"},
    )
    locations = pl.DataFrame(
        {"system": ["shopify"], "location": ["71000001"], "target": ["linnworks"], "target_location": ["L1"]}
    )
    frame = prepare_lines(orders, lines_frame([(i, 1, "ABC1", 1) for i in range(4)]), "linnworks", SERVICE_MAP,
                          None, None, locations)  # fmt: skip
    verdicts = check_orders(frame, load_suite("linnworks"), {})[1].filter(pl.col("rule") == "location")
    held = dict(verdicts.select("order_key", "reason_code").iter_rows())
    assert held == {
        "linnworks:0": None,
        "linnworks:1": "LOCATION_UNMAPPED",
        "linnworks:2": None,
        "linnworks:3": "LOCATION_UNMAPPED",
    }


def test_the_one_csv_reader_names_the_line_and_keeps_every_cell() -> None:
    """`read_csv` (every CSV fulfil reads goes through it): a BOM and CRLF are fine, a quoted line break stays in
    its cell and the next row is numbered by the line it starts on, cells past the header are kept apart, a short
    row reads its missing cells as empty; a whole-file fault is refused with its line."""
    from fulfil_assets.csv_text import CsvError, read_csv

    header, rows = read_csv(b'\xef\xbb\xbf a ,b\r\n1,"two\nlines"\r\n\r\n  \r\n3,4,5\r\n6\r\n,\r\n')
    assert header == ["a", "b"]
    assert [(r.line, r.cells, r.extra, r.width) for r in rows] == [
        (2, {"a": "1", "b": "two\nlines"}, (), 2),
        (6, {"a": "3", "b": "4"}, ("5",), 3),
        (7, {"a": "6", "b": ""}, (), 1),
        (8, {"a": "", "b": ""}, (), 2),  # a row of empty cells is the caller's to judge; a blank line is skipped
    ]
    for data, kwargs, message in [
        (b"a,b\n1,2", {"complete": True}, "no line break after the last line"),
        (b"a,b\n", {"rows_required": True}, "line 2: a header and no rows"),
        (b"a;b\n1;2\n", {"required": ("a", "b")}, "line 1: missing columns a, b"),
        (b"b,a\n", {"exact": ["a", "b"]}, "line 1: header must be a,b, found b,a"),
        (b'a,b\n1,"x"y\n', {"strict": True}, "line 2:"),
        (b"a\n\xff\n", {}, "not UTF-8 text (byte 2)"),
        (b"  \n", {}, "empty file"),
    ]:
        with pytest.raises(CsvError) as refused:
            read_csv(data, **kwargs)
        assert str(refused.value).startswith(message), (data, str(refused.value))
