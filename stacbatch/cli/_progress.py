"""Progress bars on stderr (rich), for a terminal only: nothing under ``-q``, nothing when stderr is a file or a
pipe. One bar per phase, with its count, rate, and the time left when the total is known; the bars are removed when
the phase's summary line is printed, so a finished command leaves only its summary."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from stacbatch.cli._common import state
from stacbatch.engine._progress import Progress


class _Rate(ProgressColumn):
    """Units per second over the last seconds (rich's own speed estimate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "items")
        return Text(f"{speed:,.0f} {unit}/s" if speed else f"- {unit}/s", style="progress.data.speed")


class Bars(Progress):
    """Progress as rich bars on a console (stderr). Started by the first phase, stopped by ``finish``."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bars: RichProgress | None = None
        self._task: Any = None

    @classmethod
    def for_stderr(cls) -> Progress:
        """Bars when stderr is a terminal, else a Progress that shows nothing."""
        return cls(Console(stderr=True)) if sys.stderr.isatty() else Progress()

    def _start(self) -> RichProgress | None:
        if state.quiet:
            return None
        if self._bars is None:
            self._bars = RichProgress(
                SpinnerColumn(),
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[detail]}"),
                console=self.console,
                transient=True,
                refresh_per_second=4,
            )
            self._bars.start()
        return self._bars

    def phase(self, name: str, total: int | None = None, unit: str = "items") -> None:
        bars = self._start()
        if bars is None:
            return
        if self._task is not None:
            bars.update(self._task, visible=False)
            bars.stop_task(self._task)
        self._task = bars.add_task(name, total=total, unit=unit, detail="")

    def advance(self, n: int = 1) -> None:
        if self._bars is not None and self._task is not None:
            self._bars.advance(self._task, n)

    def total(self, total: int | None) -> None:
        if self._bars is not None and self._task is not None:
            self._bars.update(self._task, total=total)

    def detail(self, text: str) -> None:
        if self._bars is not None and self._task is not None:
            self._bars.update(self._task, detail=text)

    def finish(self) -> None:
        """Remove the bars (before a summary line is printed, or at the end of the command)."""
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
            self._task = None
