"""`fulfil check-orders` as a user runs it: a real subprocess, exit codes, the report file."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

HEADER = "order_ref,ship_name,address1,address2,city,postcode,country_code,phone,email,shipping_method,sku,quantity\n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fulfil_assets.cli", "check-orders", *args], capture_output=True, text=True, timeout=120
    )


def test_all_pass_exits_zero(tmp_path: Path) -> None:
    f = tmp_path / "orders.csv"
    f.write_text(
        HEADER + "1001,Ann,1 High St,,Leeds,ls14ap,GB,07911 123456,a@x.uk,Next Day,ABC123,2\n"
        "1001,Ann,1 High St,,Leeds,ls14ap,GB,07911 123456,a@x.uk,Next Day,DEF456,1\n"
    )
    result = run(str(f), "--wms", "whistl")
    assert result.returncode == 0, result.stderr
    assert "1 orders (2 lines): 1 pass, 0 held" in result.stdout


def test_failures_exit_one_with_a_formula_safe_report(tmp_path: Path) -> None:
    f, report, cat = tmp_path / "orders.csv", tmp_path / "report.csv", tmp_path / "catalogue.csv"
    cat.write_text("sku\nABC123\n")
    f.write_text(
        HEADER + "=1+1,Ann,1 High St,,Leeds,LS1 4AP,GB,07911 123456,a@x.uk,Next Day,ABC123,1\n"
        "-5,Bob,,,Leeds,LS1 4AP,GB,07911 123456,b@x.uk,Next Day,ZZZ9,1\n"
        "@x,Cy,3 High St,,Leeds,LS1 4AP,GB,07911 123456,c@x.uk,Next Day,AB-C,x\n"
    )
    result = run(str(f), "--wms", "whistl", "--catalogue", str(cat), "--report", str(report))
    assert result.returncode == 1
    rows = list(csv.DictReader(report.open()))
    assert {(r["order_ref"], r["reason_code"]) for r in rows} == {
        ("'-5", "ADDRESS_INCOMPLETE"),
        ("'-5", "SKU_UNKNOWN_AT_WMS"),
        ("'@x", "SKU_INVALID_CHARS"),
        ("'@x", "SKU_UNKNOWN_AT_WMS"),
        ("'@x", "QUANTITY_INVALID"),
    }
    assert all(not r["order_ref"].startswith(("=", "+", "-", "@")) for r in rows)
    # Without a catalogue the catalogue rule is skipped, and the same file still fails on the rest.
    again = run(str(f), "--wms", "whistl")
    assert again.returncode == 1 and "SKU_UNKNOWN_AT_WMS" not in again.stdout


def test_unreadable_files_exit_two_with_line_and_reason(tmp_path: Path) -> None:
    f = tmp_path / "orders.csv"
    f.write_text("order_ref,sku\n1,A\n")
    result = run(str(f), "--wms", "peoplevox")
    assert result.returncode == 2 and "line 1: missing columns" in result.stderr
    f.write_text(HEADER + "1001,Ann,1 High St,,Leeds,LS1 4AP,GB,07911 123456,a@x.uk,Next Day,ABC123,1,extra\n")
    result = run(str(f), "--wms", "whistl")
    assert result.returncode == 2 and "line 2: 13 cells where the header has 12" in result.stderr
    f.write_bytes(b"\xff\xfe" + HEADER.encode("utf-16-le"))
    result = run(str(f), "--wms", "whistl")
    assert result.returncode == 2 and "not UTF-8" in result.stderr
    result = run(str(tmp_path / "missing.csv"), "--wms", "whistl")
    assert result.returncode == 2 and "not found" in result.stderr


def test_runs_from_any_folder_and_names_the_service_map_it_was_given(tmp_path: Path) -> None:
    """From a folder other than the repository's: fulfil's own suites are found, a CSV team's map without a
    `system` column is read for `--system`, and a message about the map names that file."""
    f, services = tmp_path / "orders.csv", tmp_path / "our_services.csv"
    services.write_text("shipping_method,wms,service_code\nNext Day,whistl,WHISTL-T24\n")
    f.write_text(
        HEADER + "1001,Ann,1 High St,,Leeds,LS1 4AP,GB,07911 123456,a@x.uk,Next Day,ABC123,1\n"
        "1002,Bob,2 High St,,Leeds,LS1 4AP,GB,07911 123456,b@x.uk,Saturday,ABC123,1\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fulfil_assets.cli",
            "check-orders",
            str(f),
            "--wms",
            "whistl",
            "--service-map",
            str(services),
            "--system",
            "shopify",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "not found" not in result.stderr
    assert "2 orders (2 lines): 1 pass, 1 held" in result.stdout
    assert (
        f"1002: SERVICE_UNMAPPED: shipping method 'Saturday' from shopify has no whistl service code in {services}"
        in result.stdout
    )
    assert "service_codes.csv" not in result.stdout
