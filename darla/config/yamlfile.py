"""The one reader of config and sweep files: ``yaml.SafeLoader`` made strict and bounded.

A duplicate key is an error (not "last one wins"), a date stays a string, tags beyond plain data
(``!!binary``, ``!!set``, ``!!timestamp``) are refused, and the nesting depth, the node count and
the text size *after alias expansion* are capped, so an alias bomb ("billion laughs") or 100k-deep
brackets are refused in milliseconds, before any key is checked. Every problem is a
:class:`~darla.config.strict.ConfigError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from darla.config.strict import ConfigError

#: Bounds of a config or sweep file, far above any real one (configs/ hold < 100 lines, depth 5).
MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 64
#: Values (scalars, lists, mappings) and scalar characters once every alias is expanded.
MAX_YAML_NODES = 100_000
MAX_YAML_CHARS = 16 << 20
_YAML_DATA_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose scanner refuses nesting beyond :data:`MAX_YAML_DEPTH` as it reads.

    The check must be in the scanner: PyYAML's scanner is quadratic in flow depth (100k nested
    ``[`` take minutes to scan) and its composer recursive (a RecursionError at ~1k levels).
    """

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 (PyYAML's name)
        if self.flow_level >= MAX_YAML_DEPTH:
            raise _TooDeep(self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:
        if len(self.indents) >= MAX_YAML_DEPTH:
            raise _TooDeep(self.get_mark())
        return super().add_indent(column)


# A date stays text: a config never means a timestamp, and a datetime breaks JSON and hashing.
_BoundedLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _line(node: Any) -> str:
    return f"line {node.start_mark.line + 1}"


def _check_yaml_nodes(root: Any, source: str) -> None:
    """Bound the expanded size and depth of a composed document; refuse recursive aliases.

    Iterative and memoised per node, so it costs the size of the *file*, not of the expansion
    (an alias is the same node object wherever it appears).
    """
    def children(node: Any) -> list[Any]:
        if isinstance(node, yaml.MappingNode):
            return [n for kv in node.value for n in kv]
        return list(node.value) if isinstance(node, yaml.SequenceNode) else []

    memo: dict[int, tuple[int, int, int]] = {}  # id → (nodes, scalar chars, depth), expanded
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        nid = id(node)
        if finished:
            open_.discard(nid)
            kids = [memo[id(k)] for k in children(node)]
            nodes = 1 + sum(k[0] for k in kids)
            chars = (len(node.value) if isinstance(node, yaml.ScalarNode) else 0) + sum(k[1] for k in kids)
            depth = 1 + max((k[2] for k in kids), default=0)
            if nodes > MAX_YAML_NODES or chars > MAX_YAML_CHARS:
                what = f"{MAX_YAML_NODES} values" if nodes > MAX_YAML_NODES else f"{MAX_YAML_CHARS >> 20} MiB of text"
                raise ConfigError(source, "", f"the value at {_line(node)} expands to more than {what} once its aliases "
                                              "are expanded (an alias bomb?)")
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(source, "", f"the value at {_line(node)} nests deeper than {MAX_YAML_DEPTH} levels once its aliases are expanded")
            memo[nid] = (nodes, chars, depth)
            continue
        if nid in memo:
            continue
        if nid in open_:
            raise ConfigError(source, "", f"the alias at {_line(node)} refers to a value that contains it (a recursive alias)")
        open_.add(nid)
        stack.append((node, True))
        stack.extend((k, False) for k in children(node))


def _check_yaml_keys(node: Any, source: str, path: str, seen: set[int]) -> None:
    """Plain data only, and no key twice in one mapping (PyYAML would keep the last silently)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if node.tag not in _YAML_DATA_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise ConfigError(source, path, f"YAML tag {tag} at {_line(node)} is not supported: a config holds strings, "
                                        "numbers, booleans, null, lists and mappings")
    if isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _check_yaml_keys(child, source, f"{path}[{i}]", seen)
    elif isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], Any] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            dotted = f"{path}.{name}" if path else name
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, key.value) in first:
                    raise ConfigError(source, dotted, f"duplicate key (at lines {first[key.tag, key.value].start_mark.line + 1} "
                                                      f"and {key.start_mark.line + 1}); write each key once")
                first[key.tag, key.value] = key
            _check_yaml_keys(key, source, dotted, seen)
            _check_yaml_keys(value, source, dotted, seen)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse one YAML document strictly and within bounds (see the module docstring)."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(source, "", f"{len(text)} characters; a config or sweep file is at most {MAX_YAML_BYTES >> 10} KiB")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_nodes(node, source)
        _check_yaml_keys(node, source, "", set())
        return loader.construct_document(node)
    except _TooDeep as e:
        raise ConfigError(source, "", f"nesting deeper than {MAX_YAML_DEPTH} levels at line {e.mark.line + 1}, "
                                      f"column {e.mark.column + 1}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(source, "", f"invalid YAML{where}: {problem}") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> Any:
    """Read a config or sweep file with :func:`load_yaml_text`; every problem names the file."""
    path = Path(path)
    source = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_YAML_BYTES + 1)  # never more than the bound, whatever the file is
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(source, "", f"cannot read: {e}") from None
    return load_yaml_text(text, source)

