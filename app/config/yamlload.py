"""Strict YAML reading for the config file.

Duplicate keys are errors (PyYAML would silently keep the last one), and
``${VAR}`` / ``${VAR:-default}`` in string values is replaced from the
environment after parsing, so a variable's content can never change the
document's structure. ``$${`` stands for a literal ``${``.
"""

import re
from collections.abc import Mapping
from typing import Any

import yaml

from app.config import unresolved


class YamlError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def join_path(path: tuple[str | int, ...]) -> str:
    """Render a location as ``receivers[2].pagerduty_configs[0].routing_key``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _substitute(
    value: Any, env: Mapping[str, str], path: tuple[str | int, ...], errors: list[str]
) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, env, (*path, str(k)), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, (*path, i), errors) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        if unresolved.note(f"{join_path(path)}: ${{{name}}} is not set"):
            return unresolved.PLACEHOLDER
        errors.append(f"{join_path(path)}: environment variable {name} is not set")
        return ""

    return _VAR.sub(replace, value)


def load_yaml(text: str, env: Mapping[str, str]) -> Any:
    """Parse ``text`` strictly and substitute environment variables."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlError([f"{where}{problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise YamlError(["(top level): the file must be a YAML mapping"])
    errors: list[str] = []
    data = _substitute(data, env, (), errors)
    if errors:
        raise YamlError(errors)
    return data
