"""Config problems collected all at once: invalid keys are set aside so the rest can be checked.

pydantic reports every invalid key of a config, but a section's own checks (metaclusters vs
grid) run only once its keys are valid, and the input files can be checked only with a
config. :func:`check_config` validates, sets aside what was rejected (so its default is used),
and validates again, collecting the problems of every round.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from itme.errors import ItmeInputError
from itme.pipeline._config import Config, _resolve, format_errors
from itme.pipeline._yaml import read_yaml

_DROPPED = object()


def _mark(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Mark the deepest item of ``data`` on the path ``loc`` for removal; return its path."""
    parent, key, path = None, None, ()
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            parent, key, node = node, part, node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parent, key, node = node, part, node[part]
        else:
            break
        path = (*path, part)
    if parent is None:
        return None
    parent[key] = _DROPPED
    return path


def _purge(node: Any) -> Any:
    """``node`` without the items :func:`_mark` marked."""
    if isinstance(node, dict):
        return {k: _purge(v) for k, v in node.items() if v is not _DROPPED}
    if isinstance(node, list):
        return [_purge(v) for v in node if v is not _DROPPED]
    return node


def read_config(source: str | Path) -> tuple[Any, str, Path]:
    """Parse a config file strictly (:func:`itme.pipeline._yaml.read_yaml`).

    Parameters
    ----------
    source
        The YAML file.

    Returns
    -------
    The parsed document (``{}`` when empty), its name in messages, its folder.

    Raises
    ------
    ItmeInputError
        The file is missing, not UTF-8, not YAML, or repeats a key.
    """
    path = Path(source)
    if not path.is_file():
        raise ItmeInputError("config file not found", where=str(path))
    return read_yaml(path) or {}, str(path), path.parent


def check_config(
    source: str | Path | dict[str, Any], *, base_dir: Path | None = None
) -> tuple[Config | None, list[str]]:
    """Read and validate a config, collecting every problem instead of stopping at the first.

    When some keys are invalid, they are set aside (their defaults used) so that the rest of
    the config, its input files included, can still be checked by :func:`itme.pipeline.validate`.

    Parameters
    ----------
    source
        A YAML file, or the config as a dict.
    base_dir
        Folder relative paths are resolved from. Default: the file's folder (the working
        directory for a dict).

    Returns
    -------
    The config (``None`` when even the valid keys do not make one: a required key is missing,
    or the file cannot be read) and one line per problem of the config itself.
    """
    if isinstance(source, dict):
        data, name, base = copy.deepcopy(source), "config", base_dir or Path.cwd()
    else:
        try:
            data, name, folder = read_config(source)
        except ItmeInputError as exc:
            return None, [str(exc)]
        base = base_dir or folder
    if not isinstance(data, dict):
        return None, [
            str(
                ItmeInputError(
                    "a config is a mapping of sections", where=name, found=type(data).__name__
                )
            )
        ]
    problems: list[str] = []
    dropped: list[tuple[Any, ...]] = []
    for _ in range(20):  # each round sets aside the keys pydantic rejected
        try:
            config = Config.model_validate(data)
        except ValidationError as exc:
            # errors on what an earlier round set aside are its consequences, not problems
            # (a section's own checks, e.g. metaclusters vs grid, run once its keys are valid)
            errors = [
                err
                for err in exc.errors()
                if not any(_related(tuple(err["loc"]), d) for d in dropped)
            ]
            lines = format_errors(exc, name, errors)
            problems += [p for p in lines if p not in problems]
            marked = [_mark(data, tuple(err["loc"])) for err in exc.errors()]
            if any(m is None for m in marked):
                return None, problems
            dropped += [m for m in marked if m is not None]
            data = _purge(data)
        else:
            return _resolve(config, base.resolve()), problems
    return None, problems


def _related(loc: tuple[Any, ...], dropped: tuple[Any, ...]) -> bool:
    """An error at or inside a key set aside (e.g. a required key now missing)."""
    return loc[: len(dropped)] == dropped
