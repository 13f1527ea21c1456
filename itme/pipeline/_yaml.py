"""Strict YAML for configs: UTF-8 only, and a key may appear once in a mapping.

PyYAML's ``safe_load`` keeps the last of two equal keys silently (``seed: 1`` ... ``seed: 7``
runs with seed 7); here a repeated key is an error naming the key and both lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from itme.errors import ItmeInputError

_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping repeats a key; ``key``, ``first`` and ``second`` are the key and its lines."""

    def __init__(self, key: Any, first: int, second: int, mark: yaml.Mark) -> None:
        self.key, self.first, self.second = key, first, second
        super().__init__(
            None,
            None,
            f"key {key!r} appears twice in one mapping, at line {first} and line {second}",
            mark,
        )


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build the mapping after checking that no key appears twice.

        Returns
        -------
        The mapping, as ``SafeLoader`` builds it.
        """
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *anchor` merges are not repeats
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if first is not None:
                raise DuplicateKeyError(key, first, line, key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file strictly (UTF-8, no repeated keys).

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    The parsed document (``None`` for an empty file).

    Raises
    ------
    ItmeInputError
        The file is not UTF-8 (naming the byte offset), not YAML, or repeats a key (naming the
        key and both lines).
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ItmeInputError(
            "not UTF-8 text",
            where=str(path),
            found=f"byte {raw[exc.start]:#04x} at byte position {exc.start} (line {line})",
            fix="Save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from exc
    try:
        return yaml.load(text, Loader=StrictLoader)
    except DuplicateKeyError as exc:
        raise ItmeInputError(
            f"the key {exc.key!r} appears twice in one mapping, at line {exc.first} and at "
            f"line {exc.second}",
            where=str(path),
            fix="Keep one of them (YAML would silently use the last)",
        ) from exc
    except (yaml.YAMLError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise ItmeInputError(f"not valid YAML ({exc})", where=str(path)) from exc
