"""The emulated world's record of what it planted, the truth the flow tests judge fulfil by: each planted fault is
recorded where it was made, an edit that mends an address clears it, and each target's own rules (Whistl's SKU
format, Linnworks holding no bundles) decide what a SKU means there. No fulfil code here."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from emulators.world import PLANTED_CODES, UNSERVED_METHODS, World


def test_every_planted_blemish_is_recorded_and_clean_orders_carry_none() -> None:
    world = World(seed=11, n_skus=300)
    orders = world.make_orders("linnworks", 400, world.start, world.start.replace(hour=20))
    faults = {code for o in orders for code in world.planted_faults(o, "whistl")}
    assert faults == PLANTED_CODES
    for order in orders:
        address, found = order.address, set(world.planted_faults(order, "whistl"))
        assert ("PHONE_MISSING" in found) == (address.phone == "")
        assert ("ADDRESS_INCOMPLETE" in found) == (not (address.name and address.address1 and address.town))
        assert ("SERVICE_UNMAPPED" in found) == (order.shipping_method in UNSERVED_METHODS)
        skus = [c for line in order.lines for c, _ in world.by_sku[line.sku].components or ((line.sku, 1),)]
        assert ("SKU_INVALID_CHARS" in found) == any(not sku.isalnum() for sku in skus)
        assert ("SKU_UNKNOWN_AT_WMS" in found) == any(sku not in world.wms_known for sku in skus)


def test_an_edit_that_fills_the_first_line_mends_the_address() -> None:
    world = World(seed=11, n_skus=300)
    order = world.make_orders("cin7", 1, world.start, world.start)[0]
    order.address = replace(order.address, address1="", blemishes=frozenset({"ADDRESS_INCOMPLETE"}))
    assert "ADDRESS_INCOMPLETE" in world.planted_faults(order, "whistl")
    world.edit_address(order, datetime.now(UTC))
    assert "ADDRESS_INCOMPLETE" not in world.planted_faults(order, "whistl")
    order.address = replace(order.address, town="", blemishes=frozenset({"ADDRESS_INCOMPLETE"}))
    world.edit_address(order, datetime.now(UTC))  # a new first line does not bring the town back
    assert "ADDRESS_INCOMPLETE" in world.planted_faults(order, "whistl")


def test_each_target_judges_a_sku_by_its_own_rules() -> None:
    world = World(seed=11, n_skus=300)
    order = world.make_orders("shopify", 1, world.start, world.start)[0]
    bundle = next(p for p in world.products if p.components and all(c.isalnum() for c, _ in p.components))
    hyphen = next(p.sku for p in world.products if "-" in p.sku)
    order.lines = [replace(order.lines[0], sku=bundle.sku), replace(order.lines[0], line_no=2, sku=hyphen)]
    order.shipping_method, order.address = "Next Day", replace(order.address, blemishes=frozenset())
    # Linnworks takes a hyphen but holds no bundle; Peoplevox takes a hyphen; Whistl takes neither.
    assert world.planted_faults(order, "linnworks") == ["SKU_UNKNOWN_AT_WMS"]
    whistl = set(world.planted_faults(order, "whistl"))
    assert "SKU_INVALID_CHARS" in whistl
    assert "SKU_INVALID_CHARS" not in world.planted_faults(order, "peoplevox")
    # A SKU the world never made (a client's typo) is unknown, not a crash.
    order.lines = [replace(order.lines[0], sku="NOSUCHSKU1")]
    assert world.planted_faults(order, "whistl") == ["SKU_UNKNOWN_AT_WMS"]
