"""YAML loading that remembers where every value came from, so errors can name file:line:col."""

from __future__ import annotations

import copy
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pcnbench.errors import SuiteError

KeyPath = tuple[str | int, ...]


# Bounds on what a suite file may make the parser do: a suite is written by hand, so these are
# far beyond any real one and only stop a typo or a hostile file from eating memory or stack.
MAX_FILE_BYTES = 4 * 1024 * 1024  # the file itself
MAX_DEPTH = 64  # nesting of lists and mappings
MAX_ALIAS_VALUES = 10_000  # values that aliases (*name) stand for, all aliases together
MAX_INT = 2**63 - 1  # no count, size or seed in a suite needs more


class _Refused(yaml.MarkedYAMLError):
    """A construct the suite format does not allow (a tag, nesting too deep), at its mark."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3` as a float, refuses tags and deep nesting, marks aliases."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node; an alias becomes a copy that carries the alias's own position."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = super().compose_node(parent, index)
            node = copy.copy(target)  # shares the target's children; only the marks differ
            node.start_mark, node.end_mark = event.start_mark, event.end_mark
            node.alias_of = event.anchor  # type: ignore[attr-defined]
            return node
        tag = getattr(event, "tag", None)
        if tag is not None:
            shown = re.sub(r"^tag:yaml\.org,2002:", "!!", tag)
            raise _Refused(
                problem=f"YAML tag '{shown}' is not allowed in a suite (remove it: a suite holds "
                "plain mappings, lists, strings and numbers)",
                problem_mark=event.start_mark,
            )
        depth = getattr(self, "_depth", 0)
        if depth >= MAX_DEPTH:
            raise _Refused(
                problem=f"lists and mappings are nested more than {MAX_DEPTH} deep",
                problem_mark=event.start_mark,
            )
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth


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
    text: str = ""  # the file's text as read
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
        info = Path(path).stat()
        if stat.S_ISDIR(info.st_mode):
            raise SuiteError(
                "is a folder, not a suite file (pass the suite's YAML file)", file=file
            )
        if not stat.S_ISREG(info.st_mode):
            raise SuiteError("is not a regular file (pass the suite's YAML file)", file=file)
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SuiteError("suite file not found (check the path)", file=file) from None
    except (OSError, ValueError) as exc:
        raise SuiteError(f"cannot read suite file: {exc}", file=file) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SuiteError(
            f"the suite file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; "
            "a suite lists its grids, it does not hold data",
            file=file,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SuiteError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the suite as UTF-8 text",
            file=file,
            line=line,
            column=column,
        ) from None
    # newlines as text mode reads them (the suite's sha256 has always been of this text)
    return load_text(text.replace("\r\n", "\n").replace("\r", "\n"), file)


def _text_position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character `index` of `text`."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def load_text(text: str, file: str = "<suite>") -> Source:
    """Parse YAML text into a Source (see load_source)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except _Refused as exc:
        mark = exc.problem_mark
        raise SuiteError(
            str(exc.problem), file=file, line=mark.line + 1, column=mark.column + 1
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise SuiteError(
            f"YAML syntax error: {what}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.reader.ReaderError as exc:
        char = exc.character
        code = char if isinstance(char, int) else ord(str(char)[:1] or "\0")
        line, column = _text_position(text, exc.position)
        raise SuiteError(
            f"character U+{code:04X} is not allowed in YAML (remove it)",
            file=file,
            line=line,
            column=column,
        ) from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"YAML error: {exc}", file=file) from None
    except RecursionError:
        raise SuiteError("the YAML is nested too deeply to read", file=file) from None
    source = Source(data=None, file=file, text=text)
    if node is None:
        raise SuiteError("the suite file is empty", file=file, line=1, column=1)
    source.data = _Converter(source).convert(node, ())
    return source


class _Converter:
    """Turns composed nodes into plain data, recording positions and bounding alias expansion."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.constructor = _Loader("")
        self.expanded = 0  # values converted inside alias expansions
        # the aliases being expanded and where they stand, outermost first
        self.aliases: list[tuple[yaml.Node, KeyPath]] = []
        self.open: set[int] = set()  # children lists of the collections being converted

    def refuse(self, node: yaml.Node, path: KeyPath, message: str) -> SuiteError:
        """A SuiteError at `node`'s position."""
        line, col = _mark(node)
        return SuiteError(
            message, file=self.source.file, line=line, column=col, path=format_path(path)
        )

    def convert(self, node: yaml.Node, path: KeyPath) -> Any:
        """Plain data for `node`, found at `path`."""
        alias = getattr(node, "alias_of", None)
        if alias is not None:
            self.aliases.append((node, path))
        try:
            return self._convert(node, path)
        finally:
            if alias is not None:
                self.aliases.pop()

    def _convert(self, node: yaml.Node, path: KeyPath) -> Any:
        source = self.source
        if self.aliases:
            self.expanded += 1
            if self.expanded > MAX_ALIAS_VALUES:
                outer, at = self.aliases[0]
                raise self.refuse(
                    outer,
                    at,
                    f"alias '*{outer.alias_of}' makes the suite expand to more than "
                    f"{MAX_ALIAS_VALUES:,} values through aliases; write the values out "
                    "or use fewer aliases",
                )
        if len(path) > MAX_DEPTH:
            raise self.refuse(
                node, path, f"lists and mappings are nested more than {MAX_DEPTH} deep"
            )
        source.values[path] = _mark(node)
        if isinstance(node, yaml.CollectionNode):
            if id(node.value) in self.open:
                raise self.refuse(
                    node,
                    path,
                    f"alias '*{getattr(node, 'alias_of', '?')}' refers to a value that "
                    "contains it (a suite cannot be recursive)",
                )
            self.open.add(id(node.value))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, path)
                return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self.open.discard(id(node.value))
        return self.scalar(node, path)

    def scalar(self, node: yaml.Node, path: KeyPath) -> Any:
        """The value of a scalar node; values YAML or Python cannot hold are refused here."""
        if node.tag == "tag:yaml.org,2002:merge":
            raise self.refuse(
                node, path, "YAML merge keys (<<) are not supported; write the keys out"
            )
        try:
            value = self.constructor.construct_object(node)
        except yaml.YAMLError as exc:
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise self.refuse(node, path, f"cannot read value: {what}") from None
        except (ValueError, OverflowError):  # e.g. an integer of more than 4300 digits
            raise self.refuse(
                node, path, f"cannot read the value '{str(node.value)[:20]}…'; check for a typo"
            ) from None
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise self.refuse(
                node, path, f"integer {str(value)[:20]}… does not fit in 64 bits; check for a typo"
            )
        return value

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        source = self.source
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.refuse(key_node, path, "mapping keys must be plain strings")
            key = str(self.scalar(key_node, path))
            if key in out:
                first = source.keys[(*path, key)]
                raise self.refuse(
                    key_node,
                    (*path, key),
                    f"duplicate key '{key}' (first given at line {first[0]})",
                )
            source.keys[(*path, key)] = _mark(key_node)
            out[key] = self.convert(value_node, (*path, key))
        return out
