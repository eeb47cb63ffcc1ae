"""Progress output for training steps, generation batches and sweep trials: one policy for all.

On a terminal a live tqdm bar is drawn. Anywhere else (a log file of a worker subprocess, a Slurm
output file, CI) a bar's carriage returns turn into one huge line, so plain lines are printed
instead, at every tenth of the total and at least every `every_s` seconds while something moves:

    train 120/300 steps loss 1.23 (14.2 steps/s)

`LEAKSWEEP_PROGRESS=bar|plain|off` overrides the terminal check (`off`: no progress output at all).
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, TextIO

from tqdm import tqdm

from leaksweep.errors import UserError

ENV = "LEAKSWEEP_PROGRESS"
MODES = ("bar", "plain", "off")


def choose_mode(stream: TextIO) -> str:
    """`bar` on a terminal, `plain` elsewhere, unless LEAKSWEEP_PROGRESS says otherwise."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced:
        if forced not in MODES:
            raise UserError(
                f"{ENV}={forced!r}: expected one of {', '.join(MODES)} (or unset it for the automatic choice)"
            )
        return forced
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "plain"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _one(unit: str) -> str:
    """The singular of a unit: trials -> trial, batches -> batch."""
    if unit.endswith(("ches", "shes", "xes")):
        return unit[:-2]
    return unit[:-1] if unit.endswith("s") else unit


class Progress:
    """Count work done toward `total` (None when unknown); a bar or plain lines by `choose_mode`.

    Use as a context manager, call `update(n)` as work completes and `set(**values)` for values
    shown next to the count (a loss). `close()` prints the last plain line if the last update was
    not printed yet, so a log always shows where a stage ended.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        *,
        initial: int = 0,
        stream: TextIO | None = None,
        mode: str | None = None,
        leave: bool = False,
        every_s: float = 30.0,
        every_fraction: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        note: str | None = None,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.mode = mode or choose_mode(self.stream)
        self.total, self.desc, self.unit = total, desc, unit
        self.note = note  # shown beside the rate, e.g. "2 workers" (the rate is over all of them)
        self.n = initial
        self._initial = initial  # work done before this process started (a resumed sweep) is not in the rate
        self.values: dict[str, Any] = {}
        self._clock = clock
        self._every_s, self._every_fraction = every_s, every_fraction
        self._started = clock()
        self._last_line_s = self._started
        self._printed_n = initial  # the count of the last plain line (the start counts as printed)
        self._bar = None
        if self.mode == "bar":
            self._bar = tqdm(
                total=total, desc=desc, unit=unit, initial=initial, file=self.stream, leave=leave, dynamic_ncols=True
            )

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set(self, **values: Any) -> None:
        """Values shown after the count (e.g. `loss=1.23`), kept until replaced."""
        self.values.update(values)
        if self._bar is not None:
            self._bar.set_postfix({k: _number(v) for k, v in self.values.items()}, refresh=False)

    def update(self, n: int = 1) -> None:
        if n <= 0:
            return
        before = self.n
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "plain" and self._due(before):
            self._line()

    def _due(self, before: int) -> bool:
        if self.total:
            # crossed a tenth of the total (with 300 steps: 30, 60, ..., 300)
            step = max(1, math.ceil(self.total * self._every_fraction))
            if self.n // step > before // step or self.n >= self.total > before:
                return True
        return self._clock() - self._last_line_s >= self._every_s

    def line(self) -> str:
        """The plain line for the current count, e.g. `train 120/300 steps loss 1.23 (14.2 steps/s)`."""
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        values = "".join(f" {k} {_number(v)}" for k, v in self.values.items())
        elapsed_s = self._clock() - self._started
        done = self.n - self._initial
        rate = ""
        if elapsed_s > 0 and done:
            per_s = done / elapsed_s
            # slow work (a sweep's trials) reads better as seconds per item than as 0.0 items/s: the time
            # elapsed over the items finished (with parallel workers, not one item's own duration)
            rate = (
                f"{per_s:.1f} {self.unit}/s"
                if per_s >= 1
                else f"{elapsed_s / done:.1f} s per finished {_one(self.unit)}"
            )
            rate = f" ({rate}, {self.note})" if self.note else f" ({rate})"
        return f"{self.desc} {count} {self.unit}{values}{rate}"

    def _line(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._printed_n = self.n
        self._last_line_s = self._clock()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "plain" and self.n != self._printed_n:
            self._line()
        self.mode = "off"  # a closed counter prints nothing more
