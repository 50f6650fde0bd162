"""Every plugin's parameters from one source, its `Params` model: terminal text and Markdown.

`describe_plugin` is what `pcnbench plugins NAME` prints; `reference_markdown` is the reference
README.md carries between generated-block markers, rewritten by
`python -m pcnbench.describe --write-readme README.md`.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen, MultipleOf
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pcnbench.cells import locator_fields
from pcnbench.errors import PcnbenchError

if TYPE_CHECKING:
    from pcnbench.manager import PluginHost, Registry

__all__ = [
    "BEGIN",
    "END",
    "ParamRow",
    "current_block",
    "describe_plugin",
    "main",
    "param_rows",
    "reference_markdown",
    "replace_block",
]

BEGIN = "<!-- BEGIN GENERATED: plugin parameters -->"
END = "<!-- END GENERATED: plugin parameters -->"
WIDTH = 80
BUILTIN = "pcnbench"  # the distribution whose plugins the README documents
# (kind, PluginHost attribute), in the order listings show them
KINDS = (
    ("method", "methods"),
    ("model", "models"),
    ("dataset", "datasets"),
    ("reporter", "reporters"),
    ("meter", "meters"),
    ("executor", "executors"),
)
_REFERENCE_KINDS = ("method", "model", "dataset")
_NOT_IN_IDS = "(not in cell ids)"


@dataclass(frozen=True)
class ParamRow:
    """One parameter as the reference shows it: every field a readable string."""

    name: str
    type: str  # e.g. "int", "'oneshot' | 'gradual'", "list[str]", "int | 'end'"
    default: str  # "required" when there is none
    allowed: str  # constraints, e.g. "> 0", "0 < x < 1"; "" when any value of `type` goes
    description: str


def _type_text(annotation: Any) -> str:
    """A type as a suite writer reads it: YAML words (null, list), Literal values quoted."""
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) if isinstance(a, str) else _value_text(a) for a in args)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list[{_type_text(args[0])}]"
        return "[" + ", ".join(_type_text(a) for a in args) + "]"
    if origin in (list, set, frozenset) or origin is typing.Sequence:
        return f"list[{_type_text(args[0])}]" if args else "list"
    if origin is dict or origin is typing.Mapping:
        return f"dict[{', '.join(_type_text(a) for a in args)}]" if args else "dict"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_text(a) for a in args)}]" if args else name
    return getattr(annotation, "__name__", str(annotation))


def _bound(value: Any) -> str:
    """A constraint's bound: 0 rather than 0.0."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _value_text(value: Any) -> str:
    """A value as a suite writes it in YAML: true, null, [1, 8, 8], {}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _constraints(metadata: list[Any]) -> str:
    """Pydantic constraints as `> 0`, `≤ 1`, `0 < x < 1`, `length ≥ 1`."""
    lower = upper = ""
    others: list[str] = []
    for item in metadata:
        if isinstance(item, Gt):
            lower = f"> {_bound(item.gt)}"
        elif isinstance(item, Ge):
            lower = f"≥ {_bound(item.ge)}"
        elif isinstance(item, Lt):
            upper = f"< {_bound(item.lt)}"
        elif isinstance(item, Le):
            upper = f"≤ {_bound(item.le)}"
        elif isinstance(item, MultipleOf):
            others.append(f"multiple of {_bound(item.multiple_of)}")
        elif isinstance(item, MinLen):
            others.append(f"length ≥ {item.min_length}")
        elif isinstance(item, MaxLen):
            others.append(f"length ≤ {item.max_length}")
    if lower and upper:
        low_op, low = lower.split(" ", 1)
        flipped = {">": "<", "≥": "≤"}[low_op]
        bounds = [f"{low} {flipped} x {upper}"]
    else:
        bounds = [b for b in (lower, upper) if b]
    return ", ".join(bounds + others)


def param_rows(params_model: type[BaseModel]) -> list[ParamRow]:
    """The rows describing each field of a plugin's `Params` model, in declaration order."""
    locators = locator_fields(params_model)
    rows = []
    for name, info in params_model.model_fields.items():
        if info.default is not PydanticUndefined:
            default = _value_text(info.default)
        elif info.default_factory is not None:
            default = _value_text(info.default_factory())  # type: ignore[call-arg]
        else:
            default = "required"
        description = " ".join((info.description or "").split())
        if name in locators:
            description = f"{description} {_NOT_IN_IDS}".strip()
        rows.append(
            ParamRow(
                name=name,
                type=_type_text(info.annotation),
                default=default,
                allowed=_constraints(list(info.metadata)),
                description=description,
            )
        )
    return rows


def _plugin_rows(obj: Any) -> list[ParamRow]:
    """The parameter rows of a plugin object: its `Params`, or an executor's `Options` (none
    for kinds without either)."""
    model = getattr(obj, "Params", None) or getattr(obj, "Options", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return param_rows(model)
    return []


def _summary(obj: Any) -> str:
    """The first line of the plugin class's docstring."""
    doc = inspect.getdoc(type(obj)) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


_HEADERS = ("parameter", "type", "default", "allowed", "description")


def _widths(cells: list[tuple[str, ...]], width: int) -> list[int]:
    """Column widths that fit `width` (2 spaces between columns), shrinking wide ones first."""
    natural = [max(len(row[i]) for row in cells) for i in range(len(_HEADERS))]
    longest_word = [
        max((len(w) for row in cells for w in row[i].split()), default=1)
        for i in range(len(_HEADERS))
    ]
    floor = [natural[0], 8, 8, 8, 24]  # names never wrap
    floor = [
        min(n, max(f, min(w, 16))) for n, f, w in zip(natural, floor, longest_word, strict=True)
    ]
    widths = list(natural)
    room = width - 2 * (len(widths) - 1)
    desc = len(widths) - 1
    while sum(widths) > room:
        if widths[desc] > 30:
            widths[desc] -= 1
            continue
        slack = [widths[i] - floor[i] for i in range(len(widths))]
        i = max(range(len(widths)), key=lambda j: (slack[j], j == desc))
        if slack[i] <= 0:
            break  # cannot fit without breaking names: let the row run long
        widths[i] -= 1
    return widths


def _text_table(rows: list[ParamRow], width: int = WIDTH) -> str:
    """Rows as a plain table fitting `width` columns, each cell wrapped within its column."""
    cells = [_HEADERS] + [
        (r.name, r.type, r.default, r.allowed, r.description or "-") for r in rows
    ]
    widths = _widths(cells, width)
    lines = []
    for n, row in enumerate(cells):
        wrapped = [
            textwrap.wrap(cell, w, break_on_hyphens=False) or [""]
            for cell, w in zip(row, widths, strict=True)
        ]
        for k in range(max(len(c) for c in wrapped)):
            parts = [
                (c[k] if k < len(c) else "").ljust(w) for c, w in zip(wrapped, widths, strict=True)
            ]
            lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _registry(host: PluginHost, attr: str) -> Registry[Any]:
    return getattr(host, attr)


def _families(host: PluginHost, attr: str) -> list[str]:
    """The name prefixes of the families registered for one kind (`torchvision:`), unlisted."""
    return sorted(
        name[:-1]
        for info in host.infos.values()
        for name in info.registers.get(attr, [])
        if name.endswith("*")
    )


def _origin(host: PluginHost, plugin: str) -> str:
    """'plugin 'models' (pcnbench 0.2.0)': who registered a name."""
    info = host.infos.get(plugin)
    if info is None:
        return f"plugin '{plugin}'"
    where = f"{info.distribution} {info.version}".strip()
    where = where if where.startswith("(") else f"({where})"
    return f"plugin '{plugin}' {where}"


def _family_member(host: PluginHost, attr: str, prefix: str) -> str | None:
    """The first member of the family named `prefix*` (lists the family: may be slow)."""
    registry = _registry(host, attr)
    return next((n for n in registry.names() if n.startswith(prefix)), None)


def _describe_one(host: PluginHost, kind: str, attr: str, name: str, shown: str) -> str:
    """Text for the plugin `name` of one kind; `shown` is the name the user asked for."""
    registry = _registry(host, attr)
    obj = registry.get(name)
    rows = _plugin_rows(obj)
    head = f"{shown}: {kind} registered by {_origin(host, registry.plugin_of(name))}"
    lines = textwrap.wrap(head, WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    summary = _summary(obj)
    if summary:
        lines += textwrap.wrap(summary, WIDTH)
    lines.append("")
    if rows:
        if kind == "executor":
            lines.append("Options (the `executor.options` of a suite):")
        else:
            lines.append(f"Parameters (the `params:` of a {kind} entry in a suite):")
        lines.append(_text_table(rows))
    else:
        lines.append("No parameters.")
    return "\n".join(lines)


def _known_names(host: PluginHost, near: str) -> list[str]:
    """Every registered name; a family shows as `prefix*` unless `near` (nearly) starts with it."""
    names: set[str] = set()
    for _, attr in KINDS:
        for info in host.infos.values():
            names.update(n for n in info.registers.get(attr, []) if not n.endswith("*"))
        for prefix in _families(host, attr):
            head = near[: len(prefix)]
            close = head == prefix or difflib.get_close_matches(head, [prefix], n=1, cutoff=0.8)
            if close:
                try:
                    names.update(n for n in _registry(host, attr).names() if n.startswith(prefix))
                    continue
                except PcnbenchError:  # the family cannot list its members: show it unlisted
                    pass
            names.add(prefix + "*")
    return sorted(names)


def describe_plugin(host: PluginHost, name: str) -> str:
    """What `pcnbench plugins NAME` prints: kind, origin, summary and parameter table."""
    found: list[str] = []
    for kind, attr in KINDS:
        registry = _registry(host, attr)
        if name.endswith("*") and name[:-1] in _families(host, attr):
            member = _family_member(host, attr, name[:-1])
            if member is not None:
                shown = f"{name[:-1]}NAME (any of {name}, e.g. {member})"
                found.append(_describe_one(host, kind, attr, member, shown))
        elif name in registry:
            found.append(_describe_one(host, kind, attr, name, name))
    if found:
        return "\n\n".join(found)
    known = _known_names(host, name)
    close = difflib.get_close_matches(name, [n for n in known if not n.endswith("*")], n=3)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(known[:40]) + (f", … ({len(known)} in all)" if len(known) > 40 else "")
    message = f"unknown plugin '{name}'{hint} (known: {listing})"
    failed = host.failures()
    if failed:
        which = "; ".join(p.describe() for p in failed)
        message += f"; plugin(s) that failed to load and may be the one providing it: {which}"
    raise PcnbenchError(message)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_code(text: str) -> str:
    return f"`{text}`" if text else ""


def _markdown_table(rows: list[ParamRow]) -> list[str]:
    lines = [
        "| parameter | type | default | allowed | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        default = r.default if r.default == "required" else _md_code(r.default)
        cells = (_md_code(r.name), _md_code(r.type), default, r.allowed, r.description)
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return lines


def _builtin(host: PluginHost, plugin: str) -> bool:
    info = host.infos.get(plugin)
    return info is not None and info.distribution == BUILTIN and not info.error


def reference_markdown(host: PluginHost) -> str:
    """Markdown reference of every built-in method, model and dataset: a table per plugin."""
    out: list[str] = []
    for kind, attr in KINDS:
        if kind not in _REFERENCE_KINDS:
            continue
        registry = _registry(host, attr)
        entries: list[tuple[str, Any]] = []
        for plugin in sorted(host.infos):
            if not _builtin(host, plugin):
                continue
            for name in host.infos[plugin].registers.get(attr, []):
                if name.endswith("*"):
                    member = _family_member(host, attr, name[:-1])
                    if member is not None:
                        entries.append((f"{name[:-1]}NAME", registry.get(member)))
                else:
                    entries.append((name, registry.get(name)))
        if not entries:
            continue
        out += [f"### {attr.capitalize()}", ""]
        for shown, obj in sorted(entries, key=lambda e: e[0]):
            out += [f"#### `{shown}`", ""]
            summary = _summary(obj)
            if summary:
                out += [summary, ""]
            rows = _plugin_rows(obj)
            out += [*_markdown_table(rows), ""] if rows else ["No parameters.", ""]
    return "\n".join(out).rstrip() + "\n"


def replace_block(text: str, block: str) -> str:
    """`text` with what lies between the BEGIN and END markers replaced by `block`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise PcnbenchError(f"no '{BEGIN}' … '{END}' markers (in this order) found")
    head = text[: start + len(BEGIN)]
    return f"{head}\n{block.strip()}\n{text[end:]}"


def current_block(text: str) -> str:
    """What lies between the BEGIN and END markers of `text`, stripped."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise PcnbenchError(f"no '{BEGIN}' … '{END}' markers (in this order) found")
    return text[start + len(BEGIN) : end].strip()


def main(argv: list[str] | None = None) -> int:
    """`python -m pcnbench.describe`: print the reference, or rewrite a README's block."""
    from pcnbench.manager import load_plugins

    parser = argparse.ArgumentParser(prog="python -m pcnbench.describe", description=__doc__)
    parser.add_argument("--write-readme", metavar="PATH", type=Path, help="rewrite its block")
    parser.add_argument("--check", metavar="PATH", type=Path, help="exit 1 if its block is stale")
    args = parser.parse_args(argv)
    reference = reference_markdown(load_plugins())
    try:
        if args.write_readme is not None:
            text = args.write_readme.read_text(encoding="utf-8")
            args.write_readme.write_text(replace_block(text, reference), encoding="utf-8")
            return 0
        if args.check is not None:
            stale = current_block(args.check.read_text(encoding="utf-8")) != reference.strip()
            if stale:
                print(f"{args.check}: plugin parameters out of date; run", file=sys.stderr)
                print(f"  python -m pcnbench.describe --write-readme {args.check}", file=sys.stderr)
            return 1 if stale else 0
    except (PcnbenchError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
