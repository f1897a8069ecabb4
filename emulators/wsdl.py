"""The request schema of a document/literal WSDL (its `types`), enough to hold SOAP envelopes to it the way an
ASMX service's serializer does: element names, namespace, order, occurrences, `xs:int` and enumeration values."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

XS = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"


@dataclass(frozen=True)
class Field:
    """One element of a sequence."""

    name: str
    min: int
    max: int | None  # None: unbounded
    type: str  # `xs:int`, `xs:string`, or a named type of the schema
    nillable: bool


class WsdlSchema:
    """Top-level elements, complex types (extensions flattened), enumerations and SOAP actions of one WSDL."""

    def __init__(self, path: Path) -> None:
        self.text = path.read_text(encoding="utf-8-sig")
        root = ET.fromstring(self.text)
        schema = root.find(f"{{{WSDL}}}types/{{{XS}}}schema")
        assert schema is not None, f"{path}: no schema in types"
        self.namespace = schema.get("targetNamespace", "")
        self.enums: dict[str, set[str]] = {}
        raw_types: dict[str, ET.Element] = {}
        self.elements: dict[str, list[Field] | str] = {}
        for node in schema:
            name = node.get("name", "")
            if node.tag == f"{{{XS}}}simpleType":
                self.enums[name] = {e.get("value", "") for e in node.iter(f"{{{XS}}}enumeration")}
            elif node.tag == f"{{{XS}}}complexType":
                raw_types[name] = node
            elif node.tag == f"{{{XS}}}element":
                inline = node.find(f"{{{XS}}}complexType")
                self.elements[name] = (
                    self._fields(inline, raw_types) if inline is not None else _local(node.get("type"))
                )
        self.types = {name: self._fields(node, raw_types) for name, node in raw_types.items()}
        self.actions = {
            op.get("name", ""): (op.find(f"{{{WSDL_SOAP}}}operation").get("soapAction", ""))  # type: ignore[union-attr]
            for binding in root.iter(f"{{{WSDL}}}binding")
            if binding.find(f"{{{WSDL_SOAP}}}binding") is not None
            for op in binding.findall(f"{{{WSDL}}}operation")
        }

    def _fields(self, node: ET.Element, raw_types: dict[str, ET.Element]) -> list[Field]:
        fields: list[Field] = []
        extension = node.find(f"{{{XS}}}complexContent/{{{XS}}}extension")
        if extension is not None:
            fields += self._fields(raw_types[_local(extension.get("base"))], raw_types)
            node = extension
        sequence = node.find(f"{{{XS}}}sequence")
        for e in sequence if sequence is not None else []:
            if e.tag != f"{{{XS}}}element":
                continue
            high = e.get("maxOccurs", "1")
            fields.append(
                Field(
                    e.get("name", ""),
                    int(e.get("minOccurs", "1")),
                    None if high == "unbounded" else int(high),
                    e.get("type", "xs:string") if e.get("type", "").startswith("xs:") else _local(e.get("type")),
                    e.get("nillable") == "true",
                )
            )
        return fields

    def element_fields(self, name: str) -> list[Field] | None:
        """The sequence of a top-level element (None when the schema has no such element)."""
        found = self.elements.get(name)
        return self.types.get(found) if isinstance(found, str) else found

    def problem(self, node: ET.Element, fields: list[Field], path: str) -> str | None:
        """What in `node`'s children breaks `fields` (name, namespace, order, count, value), or None."""
        order = ", ".join(f.name for f in fields) or "nothing"
        counts = [0] * len(fields)
        i = 0
        for child in node:
            ns, _, name = child.tag[1:].partition("}") if child.tag.startswith("{") else ("", "", child.tag)
            if ns != self.namespace:
                return f"<{name}> at {path} is not in namespace {self.namespace}"
            j = next((k for k in range(i, len(fields)) if fields[k].name == name), None)
            if j is None:
                where = "out of order" if any(f.name == name for f in fields) else "not expected"
                return f"<{name}> at {path} is {where} (expected, in this order: {order})"
            missing = next((fields[k].name for k in range(i, j) if counts[k] < fields[k].min), None)
            if missing:
                return f"{path}/{missing} is required before <{name}>"
            i = j
            counts[j] += 1
            if fields[j].max is not None and counts[j] > fields[j].max:
                return f"{path}/{name} appears more than {fields[j].max} time(s)"
            problem = self._value(child, fields[j], f"{path}/{name}")
            if problem:
                return problem
        missing = next((f.name for f, n in zip(fields, counts, strict=True) if n < f.min), None)
        return f"{path}/{missing} is required" if missing else None

    def _value(self, node: ET.Element, field: Field, path: str) -> str | None:
        if field.nillable and node.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true":
            return None
        text = (node.text or "").strip()
        if field.type == "xs:int":
            try:
                int(text)
            except ValueError:
                return f"{path}: {text!r} is not an integer"
        elif field.type in self.enums and text not in self.enums[field.type]:
            return f"{path}: {text!r} is not one of {sorted(self.enums[field.type])}"
        elif field.type in self.types:
            return self.problem(node, self.types[field.type], path)
        return None

    def served(self, location: str) -> str:
        """The WSDL as the service serves it: every port's address pointing at `location`."""
        return re.sub(r'(<(?:soap|soap12|http):address location=")[^"]*(")', rf"\g<1>{location}\g<2>", self.text)


def _local(qname: str | None) -> str:
    return (qname or "").split(":", 1)[-1]
