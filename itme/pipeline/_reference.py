"""The configuration reference (docs/configuration.md), generated from the pydantic models."""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from itme.pipeline._config import Config


def _type_name(annotation: Any) -> str:
    text = str(annotation)
    for noise in ("typing.", "pathlib.", "itme.pipeline._config.", "<class '", "'>"):
        text = text.replace(noise, "")
    text = text.replace("PosixPath", "path").replace("Path", "path").replace("NoneType", "null")
    return text.replace("|", "\\|")


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
        value = [v.model_dump(mode="json") for v in value]
    try:
        return "`" + json.dumps(value, default=str) + "`"
    except TypeError:
        return f"`{value}`"


def _section(model: type[BaseModel], name: str) -> list[str]:
    lines = [f"## `{name}`" if name else "## top level", ""]
    doc = (model.__doc__ or "").strip()
    if doc:
        lines += [doc, ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    nested = []
    for key, field in model.model_fields.items():
        ann = field.annotation
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if sub is not None and key != "contrasts":
            nested.append((sub, f"{name}.{key}" if name else key))
            lines.append(f"| `{key}` | section | | see [`{key}`](#{key}) |")
            continue
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{key}` | {_type_name(ann)} | {_default(field)} | {desc} |")
        args = list(typing.get_args(ann))
        while args:  # list[Contrast] | None: look inside the union and the list
            arg = args.pop(0)
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                nested.append((arg, f"{name}.{key}[]"))
            else:
                args += typing.get_args(arg)
    lines.append("")
    for sub, sub_name in nested:
        lines += _section(sub, sub_name)
    return lines


def config_reference() -> str:
    """Markdown reference of every config key: type, default and meaning.

    Returns
    -------
    The text of docs/configuration.md.
    """
    head = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models in `itme/pipeline/_config.py` by",
        "`itme config-reference > docs/configuration.md` (a test checks it is current).",
        "Unknown keys are errors naming the nearest valid key; relative paths are resolved from",
        "the config file's folder. `configs/template.yaml` is a commented example.",
        "",
    ]
    return "\n".join(head + _section(Config, "")) + "\n"
