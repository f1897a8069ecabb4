"""Configuration and mapping tables that would silently do the wrong thing are refused, naming file, key or line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fulfil_assets.config import ConfigError, every_minutes_cron, load_config
from fulfil_assets.definitions import build_definitions
from fulfil_assets.validate.mappings import MappingError, load_bundles, load_service_codes

BASE = "flows: [linnworks_whistl]\nsystems:\n  linnworks: {{base_url: {lw}}}\n  whistl: {{drop_url: '{drop}'}}\n"


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "fulfil.yaml"
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("stfp://brand@127.0.0.1:8722/", "unknown scheme 'stfp'"),
        ("ftp://brand@host/", "unknown scheme 'ftp'"),
        ("sftp://127.0.0.1:8722/", "needs a user and a host"),
        ("sftp://brand@:8722/", "needs a user and a host"),
        ("sftp://brand@host:99999/", "port that is not a number"),
        ("file://otherhost/srv/drop", "folder on this machine"),
        ("sftp//brand@127.0.0.1:8722/", "neither a URL .* nor an absolute folder"),  # a colon missing
        ("drop/whistl", "neither a URL .* nor an absolute folder"),
        ("sftp://brand:hunter2@127.0.0.1:8722/", "holds a password: .*whistl.password_env"),
        ("sftp://:hunter2@127.0.0.1:8722/", "holds a password"),  # and no user
        ("stfp://brand:hunter2@127.0.0.1/", "holds a password"),  # and a misspelt scheme
        ("sftp//brand:hunter2@127.0.0.1/", "holds a password"),  # and a colon missing
    ],
)
def test_drop_url_typos_are_refused(tmp_path: Path, drop: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"fulfil.yaml: systems\.whistl\.drop_url: .*{message}") as refused:
        load_config(write(tmp_path, BASE.format(lw="http://127.0.0.1:8701", drop=drop)))
    assert "hunter2" not in str(refused.value)  # the refusal never repeats a secret


@pytest.mark.parametrize("drop", ["sftp://brand@127.0.0.1:8722/", "/srv/whistl", "file:///srv/whistl"])
def test_good_drop_urls_load(tmp_path: Path, drop: str) -> None:
    text = BASE.format(lw="https://api.linnworks.net", drop=drop)
    if drop.startswith("sftp://"):  # a server is trusted by its key (tests/test_sftp_host_key.py)
        text = text.replace(f"'{drop}'", f"'{drop}', host_key: 'SHA256:{'A' * 43}'")
    assert load_config(write(tmp_path, text)).systems.whistl


@pytest.mark.parametrize("url", ["api.linnworks.net", "htp://api.linnworks.net", "https://"])
def test_api_urls_need_a_scheme_and_host(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"systems\.linnworks\.base_url: .*(https://|no host)"):
        load_config(write(tmp_path, BASE.format(lw=url, drop="/srv/x")))


def test_a_shopify_url_names_its_api_version_and_stock_batches_fit_the_api(tmp_path: Path) -> None:
    base = (
        "flows: [shopify_linnworks]\nsystems:\n  linnworks: {{base_url: http://127.0.0.1:8701}}\n"
        "  shopify: {{base_url: '{shop}'}}\n"
    )
    good = "https://brand.myshopify.com/admin/api/2026-10/"
    for bad in ("https://brand.myshopify.com/admin/api/", "https://brand.myshopify.com/"):
        with pytest.raises(ConfigError, match=r"systems\.shopify\.base_url: .*must end in /admin/api/<version>/"):
            load_config(write(tmp_path, base.format(shop=bad)))
    assert load_config(write(tmp_path, base.format(shop=good))).systems.shopify
    with pytest.raises(ConfigError, match=r"stock\.shopify_linnworks\.batch: 5000 is more than .* \(250\)"):
        load_config(write(tmp_path, base.format(shop=good) + "stock: {shopify_linnworks: {batch: 5000}}\n"))
    assert load_config(write(tmp_path, base.format(shop=good) + "stock: {shopify_linnworks: {batch: 250}}\n"))


def test_schedules_must_run_evenly_and_map_to_the_cron_they_mean(tmp_path: Path) -> None:
    base = BASE.format(lw="http://127.0.0.1:8701", drop="/srv/x")
    for bad in (90, 7, 0, -5):
        with pytest.raises(ConfigError, match=rf"schedules\.order_sync_minutes: {bad} minutes cannot run evenly"):
            load_config(write(tmp_path, base + f"schedules: {{order_sync_minutes: {bad}}}\n"))
    with pytest.raises(ConfigError, match=r"schedules\.despatch_poll_seconds: Input should be greater than or equal"):
        load_config(write(tmp_path, base + "schedules: {despatch_poll_seconds: 1}\n"))
    assert [every_minutes_cron(m) for m in (1, 15, 60, 120, 1440)] == [
        "*/1 * * * *",
        "*/15 * * * *",
        "0 * * * *",
        "0 */2 * * *",
        "0 0 * * *",
    ]
    assert [every_minutes_cron(m, 7) for m in (15, 60, 120, 1440)] == [
        "7-59/15 * * * *",
        "7 * * * *",
        "7 */2 * * *",
        "7 0 * * *",
    ]
    config = load_config(write(tmp_path, base + "schedules: {order_sync_minutes: 120}\n"))
    schedule = build_definitions(config).resolve_schedule_def("linnworks_order_sync_schedule")
    assert schedule.cron_schedule.endswith(" */2 * * *") and int(schedule.cron_schedule.split()[0]) < 60


def test_duplicate_keys_unused_keys_and_bad_encoding_are_refused(tmp_path: Path) -> None:
    base = BASE.format(lw="http://127.0.0.1:8701", drop="/srv/x")
    with pytest.raises(
        ConfigError, match=r"fulfil.yaml: not valid YAML: .*key 'flows' given twice \(first on line 1\)"
    ):
        load_config(write(tmp_path, base + "flows: [cin7_whistl]\n"))
    for key in ("data_dir: data", "service_map: expectations/service_codes.csv"):
        with pytest.raises(ConfigError, match=rf"{key.split(':')[0]}: unknown key"):
            load_config(write(tmp_path, base + key + "\n"))
    with pytest.raises(ConfigError, match=r"fulfil.yaml: not UTF-8 text \(byte \d+\)"):
        load_config(write(tmp_path, base + "# Café owner\n", encoding="latin-1"))
    with pytest.raises(ConfigError, match="flows: linnworks_whistl listed twice"):
        load_config(write(tmp_path, base.replace("[linnworks_whistl]", "[linnworks_whistl, linnworks_whistl]")))
    with pytest.raises(ConfigError, match=r"modes\.cin7_whistl: not one of the configured flows"):
        load_config(write(tmp_path, base + "modes: {cin7_whistl: shadow}\n"))


def test_bundle_quantities_take_ascii_digits_only(tmp_path: Path) -> None:
    path = tmp_path / "bundles.csv"
    for quantity in ("²", "٣", "1.5", "0", "+2"):
        path.write_text(f"bundle_sku,component_sku,quantity\nBOX1,SKU1,{quantity}\n", encoding="utf-8")
        with pytest.raises(
            MappingError, match=rf"bundles\.csv, line 2: quantity '{re.escape(quantity)}' must be a whole number"
        ):
            load_bundles(path)
    path.write_text("bundle_sku,component_sku,quantity\nBOX1,SKU1,3\n", encoding="utf-8")
    assert load_bundles(path)["quantity"].to_list() == [3]


def test_mapping_lines_are_counted_as_a_person_sees_them(tmp_path: Path) -> None:
    path = tmp_path / "service_codes.csv"
    header = "system,shipping_method,wms,service_code\n"
    # A quoted newline inside a cell: the row starts on line 3 and the problem is named there.
    path.write_text(header + "linnworks,Standard,whistl,WHISTL-T48\n" + 'linnworks,"Next\nDay",whistl,WHISTL-T24\n')
    with pytest.raises(MappingError, match=r"service_codes\.csv, line 3: shipping_method contains an invisible"):
        load_service_codes(path)
    # Rows after it keep their real line numbers.
    path.write_text(
        header + 'linnworks,"Express",whistl,WHISTL-T24\n' + "linnworks,Next Day,whistl,WHISTL-T99\n",
    )
    with pytest.raises(MappingError, match=r"line 3: 'WHISTL-T99' is not a whistl service code"):
        load_service_codes(path)
    # U+2028 is not a line break in a CSV: it is named as the invisible character it is.
    path.write_text(header + "linnworks,Next\u2028Day,whistl,WHISTL-T24\n", encoding="utf-8")
    with pytest.raises(MappingError, match=r"line 2: shipping_method contains an invisible character U\+2028"):
        load_service_codes(path)


def test_one_order_system_feeding_two_flows_needs_routes(tmp_path: Path) -> None:
    """Each order belongs to exactly one flow: two Linnworks flows without routes, or a location given to both,
    are refused with the reason; with routes, orders split by fulfilment location."""
    import polars as pl

    from fulfil_assets.routing import order_routes

    path = tmp_path / "fulfil.yaml"
    base = (
        "flows: [linnworks_whistl, linnworks_peoplevox]\n"
        "systems:\n  linnworks: {base_url: http://x}\n  whistl: {drop_url: /tmp/x}\n"
        "  peoplevox: {base_url: http://p}\n"
    )
    path.write_text(base)
    with pytest.raises(ConfigError, match="linnworks orders feed linnworks_whistl, linnworks_peoplevox: give routes"):
        load_config(path)
    path.write_text(
        base + "routes:\n  linnworks_whistl: {locations: [A]}\n  linnworks_peoplevox: {locations: [A, B]}\n"
    )
    with pytest.raises(ConfigError, match="location A is given to more than one linnworks flow"):
        load_config(path)
    path.write_text(base + "routes:\n  linnworks_peoplevox: {locations: [B]}\n")
    config = load_config(path)
    orders = pl.DataFrame(
        {
            "order_key": ["linnworks:1", "linnworks:2", "linnworks:3", "cin7:4"],
            "source_system": ["linnworks", "linnworks", "linnworks", "cin7"],
            "fulfilment_location": ["A", "B", None, "B"],
        }
    )
    routes = dict(order_routes(orders, config).select("order_key", "flow").iter_rows())
    assert routes == {
        "linnworks:1": "linnworks_whistl",
        "linnworks:2": "linnworks_peoplevox",
        "linnworks:3": "linnworks_whistl",
    }


def test_service_codes_are_the_accounts_own_list_beside_the_map(tmp_path: Path) -> None:
    path = tmp_path / "service_codes.csv"
    path.write_text("system,shipping_method,wms,service_code\nlinnworks,Next Day,whistl,WHISTL-NEXT\n")
    # Without an account list beside it, the shipped one applies: WHISTL-NEXT is not on it.
    with pytest.raises(
        MappingError, match=r"line 2: 'WHISTL-NEXT' is not a whistl service code in .*wms_service_codes"
    ):
        load_service_codes(path)
    # This brand's Whistl account has it: the map is fine.
    (tmp_path / "wms_service_codes.csv").write_text("wms,service_code\nwhistl,WHISTL-NEXT\n")
    assert load_service_codes(path)["service_code"].to_list() == ["WHISTL-NEXT"]
    (tmp_path / "wms_service_codes.csv").write_text("wms,service_code\nwhistel,WHISTL-NEXT\n")
    with pytest.raises(MappingError, match=r"wms_service_codes.csv, line 2: unknown wms 'whistel'"):
        load_service_codes(path)
    (tmp_path / "wms_service_codes.csv").write_text("wms,service_code\n")  # every code would go unchecked
    with pytest.raises(MappingError, match=r"wms_service_codes.csv: no service codes"):
        load_service_codes(path)


def test_a_shipping_method_with_a_trailing_space_is_the_same_method(tmp_path: Path) -> None:
    """Cells are trimmed: `Next Day ` maps `Next Day`, and a second row for it is refused as a duplicate."""
    (tmp_path / "wms_service_codes.csv").write_text("wms,service_code\nwhistl,WHISTL-NEXT\n")
    path = tmp_path / "service_codes.csv"
    path.write_text("system,shipping_method,wms,service_code\nlinnworks,Next Day ,whistl,WHISTL-NEXT\n")
    assert load_service_codes(path)["shipping_method"].to_list() == ["Next Day"]
    path.write_text(path.read_text() + "linnworks,Next Day,whistl,WHISTL-NEXT\n")
    with pytest.raises(MappingError, match=r"line 3: duplicate of line 2 for linnworks/Next Day/whistl"):
        load_service_codes(path)


def test_codes_the_target_account_does_not_offer_hold_their_orders() -> None:
    import polars as pl

    from fulfil_assets.validate.assets import check_against_account

    logged: list[str] = []
    service_map = pl.DataFrame(
        {
            "system": ["linnworks", "linnworks", "shopify"],
            "shipping_method": ["Next Day", "Standard", "Standard"],
            "wms": ["peoplevox", "peoplevox", "linnworks"],
            "service_code": ["DPD Next Day", "Royal Mail Tracked 48", "Standard Delivery"],
        }
    )
    log = type("Log", (), {"error": lambda self, m: logged.append(m)})()
    kept = check_against_account(service_map, "peoplevox", {"Royal Mail Tracked 48"}, log)
    assert kept["service_code"].to_list() == ["Royal Mail Tracked 48", "Standard Delivery"]
    assert len(logged) == 1 and "'DPD Next Day', which the peoplevox account does not offer" in logged[0]
    assert check_against_account(service_map, "peoplevox", None, log).height == 3  # nothing known: map as is


def test_docs_config_md_lists_every_key_and_mapping_column_and_is_current(tmp_path: Path) -> None:
    """docs/config.md is made from the configuration model and the mapping tables' definitions: regenerate it
    with `python -m fulfil_assets.config_docs > docs/config.md`. Every key says what it does, and each mapping
    table's example row loads through its own loader."""
    from fulfil_assets.config_docs import config_markdown
    from fulfil_assets.validate import mappings

    text = config_markdown()
    assert (Path(__file__).parent.parent / "docs" / "config.md").read_text() == text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert not [r for r in rows if r.endswith("|  |")], "a key or column without a description"
    for key in ("systems.shopify.leak_per_s", "schedules.despatch_poll_seconds", "credentials.callback_token"):
        assert key in text
    loaders = {
        "service_codes.csv": mappings.load_service_codes,
        "wms_service_codes.csv": mappings.load_account_codes,
        "variant_skus.csv": mappings.load_variant_skus,
        "locations.csv": mappings.load_locations,
        "bundles.csv": mappings.load_bundles,
        "stock_locations.csv": mappings.load_stock_locations,
        "stock_buffers.csv": mappings.load_stock_buffers,
    }
    assert set(loaders) == set(mappings.MAPPING_TABLES)
    for name, table in mappings.MAPPING_TABLES.items():
        path = tmp_path / name
        path.write_text(",".join(table.names) + "\n" + table.example + "\n")
        loaded = loaders[name](path)
        assert len(loaded) == 1, (name, loaded)
