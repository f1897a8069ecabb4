"""`docs/config.md`, made from the configuration model itself (every `fulfil.yaml` key with its type, default,
allowed values and what it does) and from the mapping tables' own definitions, so the page can never fall behind
the code: `tests/test_config_and_mappings.py` compares the file with what this writes.

    python -m fulfil_assets.config_docs > docs/config.md
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from fulfil_assets.config import EVERY_MINUTES, FLOWS, FulfilConfig
from fulfil_assets.validate.mappings import MAPPING_TABLES

SHIPPED = Path(__file__).resolve().parents[1] / "fulfil.yaml"
NAMED_CHECKS = {
    "_http_url": "an http(s) URL with a host",
    "_shopify_url": "ending in /admin/api/<version>/",
    "_drop_url": "sftp://user@host[:port]/path, file:///path or an absolute folder; no password in it",
    "_every": f"one of {', '.join(str(m) for m in EVERY_MINUTES)} (runs evenly on a clock)",
}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (also inside `X | None`), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [_model_of(a) for a in typing.get_args(annotation)]
        return next((m for m in found if m is not None), None)
    return None


def _type_name(annotation: Any) -> str:
    """A field's type in a reader's words."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (list, dict):
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def _allowed(field: FieldInfo) -> str:
    """The bounds, pattern and checks a field's value must pass."""
    found = []
    for m in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                found.append(f"{sign} {getattr(m, attr)}")
        if getattr(m, "pattern", None):
            found.append(f"matches `{m.pattern}`")
        if getattr(m, "min_length", None):
            found.append(f"at least {m.min_length} item(s)")
        func = getattr(getattr(m, "func", None), "__name__", "")
        if func in NAMED_CHECKS:
            found.append(NAMED_CHECKS[func])
    annotation = field.annotation
    for arg in typing.get_args(annotation):  # `Minutes`, `HttpUrl`... inside `X | None`
        for m in getattr(arg, "__metadata__", ()):
            func = getattr(getattr(m, "func", None), "__name__", "")
            if func in NAMED_CHECKS:
                found.append(NAMED_CHECKS[func])
    for m in getattr(annotation, "__metadata__", ()):
        func = getattr(getattr(m, "func", None), "__name__", "")
        if func in NAMED_CHECKS:
            found.append(NAMED_CHECKS[func])
    return "; ".join(dict.fromkeys(found))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    if field.default_factory is not None:
        return "empty"
    value = field.default
    if isinstance(value, BaseModel) or value is None:
        return "-"
    return f"`{value}`"


def _shipped(key: str) -> Any:
    """The value the shipped `fulfil.yaml` (the demo's, on the emulators) gives `key`, or None."""
    node: Any = yaml.safe_load(SHIPPED.read_text())
    for part in key.split("."):
        if part == "<flow>" and isinstance(node, dict) and node:
            node = next(iter(node.values()))
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def _example(key: str, field: FieldInfo) -> str:
    """A value to copy: the field's own example, or the shipped file's where it sets one other than the default."""
    if field.examples:
        return f"`{field.examples[0]}`"
    shipped = _shipped(key)
    if shipped is None or shipped == field.default:
        return ""
    return f"`{json.dumps(shipped) if isinstance(shipped, list | dict) else shipped}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    """One table row per leaf key of `model` (nested settings models expanded under their key)."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        inner = _model_of(field.annotation)
        if typing.get_origin(field.annotation) is dict:
            inner = _model_of(typing.get_args(field.annotation)[1])
            if inner is not None:
                rows += _rows(inner, f"{key}.<flow>.")
                continue
        if inner is not None:
            rows += _rows(inner, f"{key}.")
            continue
        what = (field.description or "").replace("|", "\\|").replace("\n", " ")
        example = _example(key, field).replace("|", "\\|")
        rows.append(
            f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {_allowed(field)} | {example} | {what} |"
        )
    return rows


def config_markdown() -> str:
    """The whole of docs/config.md."""
    lines = [
        "# Configuration reference",
        "",
        "Made from the configuration model (`fulfil_assets/config.py`) and the mapping tables "
        "(`fulfil_assets/validate/mappings.py`) by `python -m fulfil_assets.config_docs > docs/config.md`; a test "
        "keeps it in step. `fulfil.yaml` (or the file `FULFIL_CONFIG` names) is checked on load: an unknown key, a "
        "value out of range or a key given twice stops fulfil with the file, the key and why. Secrets are never "
        "in it: only the *names* of the environment variables that hold them.",
        "",
        f"Flows: {', '.join(f'`{f}`' for f in FLOWS)}. `<flow>` below is one of them.",
        "",
        "## fulfil.yaml",
        "",
        "The example is the key's value in the shipped `fulfil.yaml` (the demo's, pointing at the emulators) where it "
        "sets one: copy the shape, not the address.",
        "",
        "| key | type | default | allowed | example | what |",
        "|---|---|---|---|---|---|",
        *_rows(FulfilConfig, ""),
        "",
        "## Mapping tables (`expectations/`)",
        "",
        "CSV with a header row, UTF-8; cells are trimmed; a blank cell, a duplicate key, an unknown system or "
        "target, or an invisible character is refused naming the file and line.",
    ]
    for name, table in MAPPING_TABLES.items():
        lines += [
            "",
            f"### `{name}`",
            "",
            table.what[0].upper() + table.what[1:] + ".",
            f"Key: {', '.join(f'`{k}`' for k in table.key)}. Example row: `{table.example}`.",
            "",
            "| column | what |",
            "|---|---|",
            *(f"| `{column}` | {what} |" for column, what in table.columns.items()),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_markdown(), end="")
