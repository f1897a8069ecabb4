"""Who acts on each reason code an order is held for (office, cx: customer service, warehouse): the one table the
rules, the exception ledger and the docs share (docs/operations.md says what each owner does)."""

OWNERS = {
    "SKU_INVALID_CHARS": "office",
    "SKU_UNKNOWN_AT_WMS": "office",
    "SKU_UNMAPPED_VARIANT": "office",
    "PHONE_MISSING": "cx",
    "PHONE_INVALID": "cx",
    "POSTCODE_INVALID": "cx",
    "ADDRESS_INCOMPLETE": "cx",
    "SERVICE_UNMAPPED": "office",
    "QUANTITY_INVALID": "office",
    "CANCEL_TOO_LATE": "warehouse",
    "AMEND_TOO_LATE": "warehouse",
    "DESPATCH_UNKNOWN_ORDER": "warehouse",
    "DESPATCH_UNKNOWN_LINE": "warehouse",
    "DESPATCH_OVER_QUANTITY": "warehouse",
    "DESPATCH_SHORT": "warehouse",
    "WMS_REJECTED": "office",
    "SNAPSHOT_REJECTED": "warehouse",
    "LOCATION_UNMAPPED": "office",
    "SOURCE_UNREADABLE": "office",
}
