"""Tables on stdout, laid out by rich: columns as wide as their widest cell (never wrapped or cut), a bold header
on a terminal, plain text otherwise (scripts should ask for ``-f json``)."""

from __future__ import annotations

import io
import sys

from rich.console import Console
from rich.table import Table


def render(head: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> str:
    """The table as text, one line per row, ``right``: indexes of right-aligned (number) columns."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold" if sys.stdout.isatty() else "")
    for i, name in enumerate(head):
        table.add_column(name, justify="right" if i in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    out = io.StringIO()
    width = sum(max(len(r[i]) for r in [head, *rows]) + 2 for i in range(len(head)))
    Console(file=out, width=width + 1, force_terminal=sys.stdout.isatty(), color_system="standard").print(table)
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())
