"""YAML loading that remembers where every value came from, so errors can name file:line:col."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pcnbench.errors import SuiteError

KeyPath = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.1 needs a dot there)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


@dataclass
class Source:
    """Plain data loaded from YAML, with the position of every value and every mapping key."""

    data: Any
    file: str
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath, *, key: bool = False) -> tuple[int, int] | None:
        """Line and column (1-based) of `path`, or of its nearest ancestor that exists."""
        path = tuple(path)
        while True:
            if key and path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]

    def error(self, path: KeyPath, message: str, *, key: bool = False) -> SuiteError:
        """A SuiteError located at `path` in this file."""
        pos = self.locate(path, key=key)
        line, col = pos if pos else (None, None)
        return SuiteError(message, file=self.file, line=line, column=col, path=format_path(path))


def format_path(path: KeyPath) -> str:
    """Render ('methods', 2, 'params', 'at_epoch') as methods[2].params.at_epoch."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load_source(path: str | Path) -> Source:
    """Parse a YAML file into plain data plus positions; syntax errors become SuiteErrors."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError("suite file not found", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read suite file: {exc}", file=file) from None
    return load_text(text, file)


def load_text(text: str, file: str = "<suite>") -> Source:
    """Parse YAML text into a Source (see load_source)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise SuiteError(
            f"YAML syntax error: {what}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"YAML error: {exc}", file=file) from None
    source = Source(data=None, file=file)
    if node is None:
        raise SuiteError("the suite file is empty", file=file, line=1, column=1)
    constructor = _Loader("")
    source.data = _convert(node, (), source, constructor)
    return source


def _convert(node: yaml.Node, path: KeyPath, source: Source, constructor: _Loader) -> Any:
    source.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _mark(key_node)
                raise SuiteError(
                    "mapping keys must be plain strings",
                    file=source.file,
                    line=line,
                    column=col,
                    path=format_path(path),
                )
            key = str(constructor.construct_object(key_node))
            if key in out:
                line, col = _mark(key_node)
                first = source.keys[(*path, key)]
                raise SuiteError(
                    f"duplicate key '{key}' (first given at line {first[0]})",
                    file=source.file,
                    line=line,
                    column=col,
                    path=format_path((*path, key)),
                )
            source.keys[(*path, key)] = _mark(key_node)
            out[key] = _convert(value_node, (*path, key), source, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, i), source, constructor) for i, item in enumerate(node.value)
        ]
    try:
        return constructor.construct_object(node)
    except yaml.YAMLError as exc:
        line, col = _mark(node)
        raise SuiteError(
            f"cannot read value: {exc}",
            file=source.file,
            line=line,
            column=col,
            path=format_path(path),
        ) from None
