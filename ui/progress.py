"""The status line of long work: which stage runs now and for how many seconds.

A study load (reading the images and tracing the coronary tree) or a question (planning, the tools,
writing the answer) can take tens of seconds. The app runs that work in a worker thread and wakes
every second to show the stage and the time elapsed (:func:`run_with_ticks`), so the reader sees
what is happening instead of a bare spinner. When the work ends, the line keeps each stage's
duration (:meth:`StageClock.summary`).

Example::

    clock = StageClock("loading the study")
    for item in run_with_ticks(iter(slow_items())):
        if item is TICK:
            print(clock.line())  # "Working: loading the study · 3 s"
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

# What each tool does, in the reader's words: the stage shown while it runs.
TOOL_STAGES = {
    "segment_anatomy": "segmenting",
    "totalsegmentator_anatomy": "segmenting (TotalSegmentator)",
    "measure_lesion": "measuring the lesion",
    "stent_coverage": "measuring the lesion for the stent",
    "calcium_score": "scoring calcium",
    "risk_context": "estimating risk",
    "retrieve_reports": "searching prior reports",
    "study_info": "reading the study's details",
    "vlm_segment": "encoding the image (VLM)",
    "vlm_locate": "encoding the image (VLM)",
    "vlm_ask": "encoding the image (VLM)",
}
PLANNING = "planning"
PLANNING_FIRST = "planning (the first question loads the question model)"
WRITING = "writing the answer"
LOADING = "loading the study: reading the images, tracing the coronary tree"
TICK = object()  # what run_with_ticks yields when a second passed without an item


def tool_stage(tool: str) -> str:
    return TOOL_STAGES.get(tool, f"running {tool}")


@dataclass
class StageClock:
    """The stages of one piece of work and how long each took (wall-clock seconds)."""

    stage: str
    detail: str = ""  # e.g. "image 12/240" while a PACS series arrives; set from the worker thread
    started: float = field(default_factory=time.monotonic)
    stage_started: float = field(default_factory=time.monotonic)
    done: list[tuple[str, float]] = field(default_factory=list)

    def enter(self, stage: str) -> None:
        """Start ``stage`` (the running one ends now); entering the running stage again changes nothing."""
        if stage == self.stage:
            return
        now = time.monotonic()
        self.done.append((self.stage, now - self.stage_started))
        self.stage, self.stage_started, self.detail = stage, now, ""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        """The running stage and the seconds since the work began, e.g. ``Working: measuring the lesion · 12 s``."""
        detail = f" ({self.detail})" if self.detail else ""
        return f"Working: {self.stage}{detail} · {self.elapsed():.0f} s"

    def summary(self, outcome: str) -> str:
        """``outcome`` with the total time and each stage's share, e.g. ``✓ answered in 14 s (planning 1 s, ...)``."""
        stages = [*self.done, (self.stage, time.monotonic() - self.stage_started)]
        parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages)
        return f"{outcome} in {self.elapsed():.0f} s ({parts})"


def run_with_ticks(items: Iterator | Callable[[], object], tick_s: float = 1.0,
                   stop: Callable[[], bool] | None = None) -> Iterator:
    """Run blocking work in a worker thread; yield its items as they come, and :data:`TICK` each idle ``tick_s``.

    ``items`` is an iterator (each item is passed on) or a function (its return value is yielded once).
    The worker fetches the next item only when the caller asks for it (lockstep, never ahead), so
    when ``stop`` says so, or this generator is closed, the iterator is closed and its remaining
    steps never run. An exception of the work is raised here, in the caller's thread.
    """
    box: queue.Queue = queue.Queue()
    demand = threading.Semaphore(0)  # one release per item the caller asks for
    closed = threading.Event()

    def halted() -> bool:
        return closed.is_set() or (stop is not None and stop())

    def work() -> None:
        try:
            if callable(items) and not hasattr(items, "__next__"):
                box.put(("item", items()))
                box.put(("end", None))
                return
            while True:
                demand.acquire()
                if halted():
                    getattr(items, "close", lambda: None)()  # a generator's remaining steps never run
                    return
                try:
                    item = next(items)
                except StopIteration:
                    box.put(("end", None))
                    return
                box.put(("item", item))
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread, which raises it
            box.put(("error", err))

    threading.Thread(target=work, name="cardiovlm-work", daemon=True).start()
    try:
        demand.release()
        while True:
            try:
                kind, value = box.get(timeout=tick_s)
            except queue.Empty:
                if halted():
                    return
                yield TICK
                continue
            if kind == "error":
                raise value
            if kind == "end":
                return
            yield value
            if halted():
                return
            demand.release()
    finally:
        closed.set()
        demand.release()  # a worker waiting for the next request wakes, sees the stop and closes the work
