"""One seeded, coherent business behind all six emulators.

The same seed always gives the same world: a catalogue (with bundles and some SKUs a strict WMS rejects),
en_GB customers (some with missing or malformed phones and postcodes), shipping methods named as customers
see them, paid and unpaid orders spread over the day, and the warehouse's starting stock.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

FIRST_NAMES = (
    "Oliver George Harry Noah Jack Leo Arthur Muhammad Oscar Charlie Jacob Thomas Henry William "
    "Olivia Amelia Isla Ava Mia Ivy Lily Isabella Rosie Sophia Grace Freya Florence Willow Emily "
    "Siobhan Niamh Aoife Rhys Dylan Cerys Eilidh Callum Saoirse Zoë Chloé José Anaïs Priya Aaliyah"
).split()
SURNAMES = (
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Patel Robinson Wright Thompson Evans "
    "Walker White Roberts Green Hall Wood Jackson Clarke Hughes Edwards Lewis Khan O'Brien "
    "MacDonald Ní Bhriain Llewellyn Fitzgerald-Smythe Nowak Kowalski Singh Ahmed Begum"
).split()
STREETS = (
    "High Street|Station Road|Main Street|Park Road|Church Road|Church Street|London Road|Victoria Road|"
    "Green Lane|Manor Road|Church Lane|Park Avenue|The Avenue|The Crescent|Queens Road|New Road|"
    "Grange Road|Kings Road|Kingsway|Windsor Road|Highfield Road|Mill Lane|Alexander Road|York Road|"
    "St. John's Road|Albert Road|Cromwell Close|Bridge Street"
).split("|")
# (town, region, postcode area) — real UK post towns with their outward-code area.
TOWNS = (
    ("London", "Greater London", "SW"),
    ("London", "Greater London", "E"),
    ("London", "Greater London", "N"),
    ("Manchester", "Greater Manchester", "M"),
    ("Birmingham", "West Midlands", "B"),
    ("Leeds", "West Yorkshire", "LS"),
    ("Glasgow", "Lanarkshire", "G"),
    ("Edinburgh", "Midlothian", "EH"),
    ("Cardiff", "South Glamorgan", "CF"),
    ("Belfast", "County Antrim", "BT"),
    ("Bristol", "Avon", "BS"),
    ("Sheffield", "South Yorkshire", "S"),
    ("Liverpool", "Merseyside", "L"),
    ("Newcastle upon Tyne", "Tyne and Wear", "NE"),
    ("Nottingham", "Nottinghamshire", "NG"),
    ("Brighton", "East Sussex", "BN"),
    ("Norwich", "Norfolk", "NR"),
    ("Exeter", "Devon", "EX"),
    ("Aberdeen", "Aberdeenshire", "AB"),
    ("Milton Keynes", "Buckinghamshire", "MK"),
)
ABROAD = (
    ("IE", "Ireland", "Dublin", "Dublin", "D02 X285", "+353 1 234 5678"),
    ("FR", "France", "Paris", "Île-de-France", "75008", "+33 1 42 68 53 00"),
    ("DE", "Germany", "Berlin", "Berlin", "10117", "+49 30 901820"),
    ("US", "United States", "New York", "NY", "10001", "+1 212-555-0143"),
)
COUNTRY_NAMES = {"GB": "United Kingdom", **{a[0]: a[1] for a in ABROAD}}
# Shipping methods as the customer saw them at checkout; the last two have no WMS service code on purpose.
SHIPPING_METHODS = (
    ("Standard Delivery", 0.55),
    ("Express Delivery", 0.15),
    ("Next Day", 0.15),
    ("Royal Mail 48", 0.07),
    ("International Tracked", 0.04),
    ("Click & Collect", 0.02),
    ("Saturday Delivery", 0.02),
)
UNSERVED_METHODS = frozenset(m for m, _ in SHIPPING_METHODS[-2:])
# The blemishes each target's SKU format refuses (contracts/systems.md): Whistl takes letters and digits only,
# Peoplevox any printable character but a space, Linnworks anything printable.
# Every reason code the world plants (`World.planted_faults` returns a subset of these).
PLANTED_CODES = frozenset(
    {
        "PHONE_MISSING",
        "PHONE_INVALID",
        "POSTCODE_INVALID",
        "ADDRESS_INCOMPLETE",
        "SERVICE_UNMAPPED",
        "SKU_INVALID_CHARS",
        "SKU_UNKNOWN_AT_WMS",
    }
)
REFUSED_SKU_CHARS = {"whistl": frozenset("- _"), "peoplevox": frozenset(" "), "linnworks": frozenset()}
CHANNELS = ("Website", "Amazon UK", "eBay", "Etsy", "TikTok Shop")
PRODUCT_WORDS = (
    "Tee Hoodie Mug Candle Notebook Tote Cap Scarf Socks Poster Print Bottle Lamp Cushion Throw "
    "Apron Planner Journal Sticker Pin Keyring Beanie Jumper Blanket Coaster"
).split()
COLOURS = "Black White Navy Sage Rust Oat Pink Teal Mustard Grey".split()
SIZES = ("XS", "S", "M", "L", "XL", "OS")
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters valid in the inward code of a UK postcode


@dataclass(frozen=True)
class Product:
    """One catalogue item: a stock SKU, or a bundle made of component SKUs."""

    sku: str
    title: str
    barcode: str
    price: float
    weight_g: int
    stock_item_id: str
    components: tuple[tuple[str, int], ...] = ()

    @property
    def is_bundle(self) -> bool:
        """True when the item is sold as a kit of other SKUs."""
        return bool(self.components)


@dataclass(frozen=True)
class Address:
    """A ship-to address as the customer typed it (blemishes included)."""

    name: str
    company: str
    address1: str
    address2: str
    address3: str
    town: str
    region: str
    postcode: str
    country_code: str
    phone: str
    email: str
    blemishes: frozenset[str] = frozenset()  # the reason codes the world planted here (see `World.address`)

    @property
    def country(self) -> str:
        """The country's English name, as OMSs show it."""
        return COUNTRY_NAMES.get(self.country_code, self.country_code)


@dataclass(frozen=True)
class OrderLine:
    """One order line."""

    line_no: int
    sku: str
    quantity: int
    unit_price: float
    variant_id: int


@dataclass
class Order:
    """A commercial order as its OMS holds it; each emulator renders it in its own shape."""

    number: int
    uid: str
    channel: str
    created_at: datetime
    updated_at: datetime
    paid: bool
    address: Address
    shipping_method: str
    currency: str
    lines: list[OrderLine]
    status: str = "open"  # open | cancelled | despatched | part_despatched
    tracking: list[dict] = field(default_factory=list)

    @property
    def total(self) -> float:
        """Order value including postage-free lines (postage is not modelled)."""
        return round(sum(line.quantity * line.unit_price for line in self.lines), 2)


def _uk_postcode(rng: random.Random, area: str) -> str:
    district = str(rng.randint(1, 20))
    if area in ("SW", "E", "N") and rng.random() < 0.2:
        district = f"{rng.randint(1, 9)}{rng.choice('AW')}"
    inward = f"{rng.randint(0, 9)}{rng.choice(INWARD_LETTERS)}{rng.choice(INWARD_LETTERS)}"
    return f"{area}{district} {inward}"


def _uk_phone(rng: random.Random) -> str:
    digits = f"7{rng.choice('4578')}{rng.randint(10, 99)}{rng.randint(100000, 999999)}"
    style = rng.random()
    if style < 0.5:
        return f"0{digits[:4]} {digits[4:]}"
    if style < 0.75:
        return f"+44 {digits[:4]} {digits[4:]}"
    if style < 0.9:
        return f"0{digits}"
    return f"0161 {rng.randint(200, 999)} {rng.randint(1000, 9999)}"


class World:
    """A seeded business: catalogue, warehouse catalogue and stock, customers and the order stream.

    Every random choice comes from streams derived from `seed`, so two worlds with the same seed and the
    same calls are identical.
    """

    def __init__(self, seed: int = 7, n_skus: int = 2000, start: datetime | None = None) -> None:
        self.seed = seed
        self.start = start or datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
        rng = random.Random(f"{seed}:catalogue")
        self.products: list[Product] = []
        stock_skus: list[str] = []
        for i in range(n_skus):
            word = PRODUCT_WORDS[i % len(PRODUCT_WORDS)]
            colour = COLOURS[(i // len(PRODUCT_WORDS)) % len(COLOURS)]
            size = SIZES[i % len(SIZES)]
            sku = f"{word[:3].upper()}{i:05d}{colour[:2].upper()}{size}"
            blemish = rng.random()
            if blemish < 0.01:
                sku = f"{sku[:3]}-{sku[3:]}"
            elif blemish < 0.015:
                sku = f"{sku[:3]} {sku[3:]}"
            elif blemish < 0.02:
                sku = f"{sku[:3]}_{sku[3:]}"
            self.products.append(
                Product(
                    sku=sku,
                    title=f"{colour} {word} ({size})",
                    barcode=f"50{rng.randint(10**10, 10**11 - 1)}",
                    price=round(rng.uniform(4, 80), 2),
                    weight_g=rng.randint(50, 2500),
                    stock_item_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                )
            )
            stock_skus.append(sku)
        for j in range(max(1, n_skus // 50)):
            parts = rng.sample(stock_skus, k=rng.randint(2, 3))
            self.products.append(
                Product(
                    sku=f"BUNDLE{j:04d}",
                    title=f"Gift set {j}",
                    barcode=f"59{rng.randint(10**10, 10**11 - 1)}",
                    price=round(rng.uniform(25, 120), 2),
                    weight_g=rng.randint(500, 3000),
                    stock_item_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    components=tuple((p, rng.choice((1, 1, 2))) for p in parts),
                )
            )
        self.by_sku = {p.sku: p for p in self.products}
        # The warehouse knows every stock SKU except a few the office forgot to set up there.
        unknown = set(rng.sample(stock_skus, k=max(1, len(stock_skus) // 100)))
        self.wms_catalogue: list[str] = [s for s in stock_skus if s not in unknown]
        self.wms_known = frozenset(self.wms_catalogue)
        self.stock_skus = frozenset(stock_skus)
        self.initial_stock: dict[str, int] = {s: rng.choice((0, 3, 12, 40, 150, 600)) for s in self.wms_catalogue}
        self.variant_ids = {p.sku: 40_000_000 + i for i, p in enumerate(self.products)}
        self._order_rng: dict[str, random.Random] = {}
        self._numbers: dict[str, int] = {}

    # -- orders -------------------------------------------------------------------------------
    def address(self, rng: random.Random) -> Address:
        """A ship-to address: mostly clean UK ones, some abroad, a known share with blemishes."""
        first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
        email = f"{first}.{last}{rng.randint(1, 999)}@example.co.uk".lower().replace(" ", "").replace("'", "")
        company = rng.choice(("", "", "", "", "Acme Ltd", "Northern Widgets plc"))
        line1 = f"{rng.randint(1, 220)} {rng.choice(STREETS)}"
        line2 = rng.choice(("", "", "", f"Flat {rng.randint(1, 40)}"))
        if rng.random() < 0.9:
            town, region, area = rng.choice(TOWNS)
            postcode, phone, cc = _uk_postcode(rng, area), _uk_phone(rng), "GB"
        else:
            cc, _, town, region, postcode, phone = rng.choice(ABROAD)
        planted: set[str] = set()
        r = rng.random()
        if r < 0.03:
            phone = ""
            planted.add("PHONE_MISSING")
        elif r < 0.05:
            phone = rng.choice(("12345", "n/a", "0770090012", "+44 (0) 7700", "07700 900 123 456"))
            if cc != "GB" and phone.startswith("07700"):  # a short UK mobile can be a whole number abroad
                phone = "12345"
            planted.add("PHONE_INVALID")
        r = rng.random()
        if r < 0.02 and cc == "GB":
            postcode = rng.choice(("SW1A1AA", "sw1a 1aa", " M1 1AE ", "SW1A 1A", "12345", "M60 1QDX", ""))
            if postcode in ("SW1A 1A", "12345", "M60 1QDX", ""):  # the first three are only typed loosely
                planted.add("POSTCODE_INVALID")
        elif r < 0.03:
            line1 = ""
            planted.add("ADDRESS_INCOMPLETE")
        elif r < 0.035:
            town = ""
            planted.add("ADDRESS_INCOMPLETE")
        name = f"{first} {last}"
        if rng.random() < 0.01:
            name = ""
            planted.add("ADDRESS_INCOMPLETE")
        return Address(name, company, line1, line2, "", town, region, postcode, cc, phone, email, frozenset(planted))

    def make_orders(self, system: str, n: int, start: datetime, end: datetime) -> list[Order]:
        """`n` new orders for `system`, created between `start` and `end` in time order.

        Calls for one system draw on that system's own stream, so systems don't disturb each other.
        """
        rng = self._order_rng.setdefault(system, random.Random(f"{self.seed}:orders:{system}"))
        number = self._numbers.get(system, 100_000)
        span = max((end - start).total_seconds(), 1.0)
        offsets = sorted(rng.random() * span for _ in range(n))
        methods = [m for m, _ in SHIPPING_METHODS]
        weights = [w for _, w in SHIPPING_METHODS]
        products = self.products
        orders: list[Order] = []
        for off in offsets:
            number += 1
            created = start + timedelta(seconds=off)
            lines: list[OrderLine] = []
            for line_no in range(1, rng.choice((1, 1, 1, 2, 2, 3, 4)) + 1):
                product = products[rng.randrange(len(products))]
                qty = rng.choice((1, 1, 1, 1, 2, 2, 3, 5))
                lines.append(OrderLine(line_no, product.sku, qty, product.price, self.variant_ids[product.sku]))
            address = self.address(rng)
            method = rng.choices(methods, weights)[0]
            if address.country_code != "GB" and rng.random() < 0.8:
                method = "International Tracked"
            orders.append(
                Order(
                    number=number,
                    uid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    channel=rng.choice(CHANNELS),
                    created_at=created,
                    updated_at=created,
                    paid=rng.random() < 0.93,
                    address=address,
                    shipping_method=method,
                    currency="GBP" if address.country_code == "GB" else rng.choice(("GBP", "EUR")),
                    lines=lines,
                )
            )
        self._numbers[system] = number
        return orders

    def edit_address(self, order: Order, at: datetime) -> Order:
        """A late address edit from customer services: a new first line, same customer (which completes an
        address whose only gap was its first line)."""
        rng = self._order_rng.setdefault(f"edit:{order.uid}", random.Random(f"{self.seed}:edit:{order.uid}"))
        old = order.address
        blemishes = old.blemishes - {"ADDRESS_INCOMPLETE"} if old.name and old.town else old.blemishes
        new = replace(old, address1=f"{rng.randint(1, 99)} {rng.choice(STREETS)}", blemishes=blemishes)
        order.address = new
        order.updated_at = at
        return order

    def edit_lines(self, order: Order, at: datetime, change: str = "quantity") -> Order:
        """A line edit from customer services: one more of the first line (`quantity`), the last line taken off
        (`remove`, for orders of two lines or more) or another stock item the warehouse knows added as a new last
        line (`add`)."""
        if change == "quantity":
            order.lines[0] = replace(order.lines[0], quantity=order.lines[0].quantity + 1)
        elif change == "remove" and len(order.lines) > 1:
            order.lines = order.lines[:-1]
        elif change == "add":
            rng = self._order_rng.setdefault(f"lines:{order.uid}", random.Random(f"{self.seed}:lines:{order.uid}"))
            held, known = {line.sku for line in order.lines}, set(self.wms_catalogue)
            product = rng.choice([p for p in self.products if p.sku in known - held and p.sku.isalnum()])
            line_no = max(line.line_no for line in order.lines) + 1
            order.lines.append(OrderLine(line_no, product.sku, 1, product.price, self.variant_ids[product.sku]))
        else:
            raise ValueError(f"cannot {change!r} the lines of order {order.uid}")
        order.updated_at = at
        return order

    def order_truth(self, order: Order, target: str, cancelled: bool) -> dict[str, Any]:
        """What the world knows of `order` for a test to judge fulfil by: the target it is for, whether it was
        paid and cancelled, and the reason codes planted in it for that target (`planted_faults`). `ready`: paid,
        not cancelled and with nothing planted, so it must reach its target."""
        faults = self.planted_faults(order, target)
        ready = order.paid and not cancelled and not faults
        return {"target": target, "paid": order.paid, "cancelled": cancelled, "faults": faults, "ready": ready}

    def planted_faults(self, order: Order, target: str) -> list[str]:
        """The reason codes the world planted in `order` for `target` (a warehouse, or Linnworks for a storefront's
        orders), from what it did when it made and edited the order, not from any rule fulfil runs: the address's
        blemishes, a shipping method no warehouse serves, a SKU the target's format refuses or its catalogue lacks
        (bundles go to a warehouse as their components; Linnworks, holding no bundle as a stock item, gets the
        bundle's SKU and does not know it). Empty: the order is fit to send."""
        faults = set(order.address.blemishes)
        if order.shipping_method in UNSERVED_METHODS:
            faults.add("SERVICE_UNMAPPED")
        known = self.stock_skus if target == "linnworks" else self.wms_known  # Linnworks holds no bundles
        for line in order.lines:
            product = self.by_sku.get(line.sku)  # None: a SKU a client created an order with that the world lacks
            skus = [line.sku]
            if product is not None and product.is_bundle and target != "linnworks":
                skus = [sku for sku, _ in product.components]
            for sku in skus:
                if set(sku) & REFUSED_SKU_CHARS[target]:
                    faults.add("SKU_INVALID_CHARS")
                if sku not in known:
                    faults.add("SKU_UNKNOWN_AT_WMS")
        return sorted(faults)


def random_token(rng: random.Random, n: int = 32) -> str:
    """An opaque credential-like token."""
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))
