"""A vendor's Swagger 2 spec as the emulator's source of truth for shapes: every answer is built to the spec's
response model (its fields exactly, missing ones at their type's empty value, extra ones dropped) and every request
body is checked against the request model (unknown fields, wrong types and enum values refused)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema

_MISSING = object()
_EMPTY = {"integer": 0, "number": 0, "boolean": False}


class Swagger:
    """Operations (`Controller/Method`) of one or more Swagger 2 files, each with its own definitions."""

    def __init__(self, files: list[Path]) -> None:
        self.ops: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # method -> (operation, spec)
        for path in files:
            spec = json.loads(path.read_text(encoding="utf-8"))
            for route, verbs in spec["paths"].items():
                for verb in ("post", "get"):
                    if verb in verbs:
                        self.ops[route.removeprefix("/api/")] = (verbs[verb], spec)

    def rate_limit(self, method: str) -> int | None:
        """Calls a minute the spec states for `method` (Linnworks writes it into each operation's description)."""
        op = self.ops.get(method, ({}, {}))[0]
        found = re.search(r"Rate limit: </b>.*?<b>(\d+)</b>.*?/ minute", op.get("description", ""), re.S)
        return int(found.group(1)) if found else None

    def response_schema(self, method: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The 200 answer's schema of `method` and its spec's definitions (None: not in the spec)."""
        op, spec = self.ops.get(method, (None, None))
        if op is None:
            return None
        return op["responses"].get("200", {}).get("schema", {}), spec["definitions"]

    def request_problem(self, method: str, body: dict[str, Any]) -> str | None:
        """Why `body` breaks `method`'s request model (None: it does not, or the method takes no body)."""
        op, spec = self.ops.get(method, (None, None))
        if op is None:
            return None
        params = [p for p in op.get("parameters", []) if p.get("in") == "body"]
        if not params:
            return None
        validator = _validator(id(spec), json.dumps(params[0]["schema"]), spec)
        error = next(iter(sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "body"
        return f"{where}: {error.message}"

    def shape(self, method: str, value: Any) -> Any:
        """`value` built to `method`'s response model."""
        found = self.response_schema(method)
        return value if found is None else _shape(value, found[0], found[1], 0)


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _shape(value: Any, schema: dict[str, Any], defs: dict[str, Any], depth: int) -> Any:
    schema = _resolve(schema, defs)
    kind = schema.get("type")
    if "properties" in schema:
        if value is _MISSING and depth > 3:
            return None
        given = value if isinstance(value, dict) else {}
        return {k: _shape(given.get(k, _MISSING), sub, defs, depth + 1) for k, sub in schema["properties"].items()}
    if kind == "array":
        items = schema.get("items", {})
        return [_shape(v, items, defs, depth + 1) for v in value] if isinstance(value, list) else []
    if value is _MISSING:
        return _EMPTY.get(kind or "", None)
    return value


_VALIDATORS: dict[tuple[int, str], jsonschema.Draft4Validator] = {}


def _validator(spec_id: int, schema_json: str, spec: dict[str, Any]) -> jsonschema.Draft4Validator:
    """A validator for one request model: no unknown fields, `null` allowed (Swagger 2 cannot say nullable)."""
    key = (spec_id, schema_json)
    if key not in _VALIDATORS:
        defs = copy.deepcopy(spec["definitions"])
        for model in defs.values():
            _strict(model)
        root = {**json.loads(schema_json), "definitions": defs}
        _strict(root)
        _VALIDATORS[key] = jsonschema.Draft4Validator(root)
    return _VALIDATORS[key]


def _strict(schema: dict[str, Any]) -> None:
    if not isinstance(schema, dict):
        return
    if "properties" in schema:
        schema.setdefault("additionalProperties", False)
        for sub in schema["properties"].values():
            _strict(sub)
    if isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    if isinstance(schema.get("items"), dict):
        _strict(schema["items"])
