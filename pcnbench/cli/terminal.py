"""Where the commands write: a rich console, and the width a table or a line may take there."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def rich_console(stderr: bool = False, wide: bool = False) -> Console:
    """A console on stdout (or stderr); `wide`: 160 columns in a pipe, for tables of results."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if wide and not console.is_terminal and not os.environ.get("COLUMNS"):
        # piped output has no width; tables of results read better unwrapped
        console.width = 160
    return console


def table_width(out: Console) -> int | None:
    """The columns a table may take on `out`: the terminal's or COLUMNS; None (any) in a pipe."""
    if out.is_terminal or os.environ.get("COLUMNS"):
        return int(out.width)
    return None


def wrapped(text: str, width: int | None, first: str = "", then: str = "") -> list[str]:
    """`text` as lines within `width` (one line when None), words and paths kept whole."""
    import textwrap

    if width is None or len(first) + len(text) <= width:
        return [first + text]
    return textwrap.wrap(
        text,
        max(20, width),
        initial_indent=first,
        subsequent_indent=then,
        break_long_words=False,
        break_on_hyphens=False,
    )
