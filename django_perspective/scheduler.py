"""Fair scheduling of engine work: lanes served by worker threads, least queue time plus load first.

One engine thread serves every connection, so first come, first served lets one client's
backlog stall everybody's small requests for many seconds. Here each connection - and the
server's own work, as one more - is a ``Lane`` holding its calls in order, and a
``Worker`` thread serves the lanes that have work one call at a time, next the lane whose
queue time plus engine time used lately (a decaying sum, ``Load``) is least: a light
connection's call runs as soon as the current one ends, heavy ones take turns, and a
backlog is no claim on the thread. Counting the queue time bounds the wait: a lane that
used L seconds goes before every lane queued more than L after it, so a stream of new
connections (load 0 each) cannot starve it, as it could when the load alone decided.
A lane has at most one call queued or running at a time, on whichever worker its router
picks, so a connection never races itself across threads. Workers are daemon threads: a
call stuck in the engine never keeps the process alive. Nothing here knows Perspective;
``engine.py`` supplies the routing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("django_perspective.engine")

_current = threading.local()  # .running: the Running record of this worker thread


@dataclass
class Task:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    read: bool
    future: Future[Any] | None = None


@dataclass
class Running:
    """What a worker runs now and since when, for the watchdog."""

    lane: str
    started: float
    what: str
    reported: bool = field(default=False)
    request: tuple[int, str] | None = None  # (type number, entity) of the engine request now

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def describe(self) -> str:
        if self.request is None:
            return self.what
        return f"request kind={self.request[0]} entity={self.request[1]!r}"


def note(kind: int, entity: str) -> None:
    """Name the engine request running on this worker thread (for the watchdog's log line).

    Kept as values, formatted only if the call stalls: this runs for every request.
    """
    running = getattr(_current, "running", None)
    if running is not None:
        running.request = (kind, entity)


class Load:
    """Engine seconds used lately: a sum that halves every ``HALF_LIFE`` seconds."""

    HALF_LIFE = 10.0

    def __init__(self) -> None:
        self._value = 0.0
        self._stamp = time.monotonic()

    def add(self, seconds: float) -> None:
        self._value = self.value() + seconds
        self._stamp = time.monotonic()

    def value(self) -> float:
        return self._value * 0.5 ** ((time.monotonic() - self._stamp) / self.HALF_LIFE)


class Budget:
    """Engine seconds per minute, as a leaky bucket: use drains at ``per_minute / 60`` a second."""

    def __init__(self, per_minute: float) -> None:
        self.per_minute = per_minute
        self._used = 0.0
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _drain(self, now: float) -> None:
        self._used = max(0.0, self._used - (now - self._stamp) * self.per_minute / 60)
        self._stamp = now

    def charge(self, seconds: float) -> None:
        with self._lock:
            self._drain(time.monotonic())
            self._used += seconds

    def used(self) -> float:
        with self._lock:
            self._drain(time.monotonic())
            return self._used

    def exceeded(self) -> str | None:
        """Why this lane's next call is refused, or None while it is within its budget."""
        if not self.per_minute:
            return None
        used = self.used()
        if used <= self.per_minute:
            return None
        wait = (used - self.per_minute) * 60 / self.per_minute
        return (
            f"engine time budget exceeded: this connection used {used:.1f} s of engine time "
            f"(ENGINE_TIME_BUDGET allows {self.per_minute:g} s per minute); retry in {wait:.0f} s"
        )


class Lane:
    """One connection's calls (or the server's), run in the order they were queued.

    ``router(task)`` names the worker for the call at the head; a worker may hand it on
    to another (``Worker.admit``). Engine time of every call is charged to ``budget``.
    """

    def __init__(self, router: Callable[[Task], Worker], *, label: str = "", budget: float = 0) -> None:
        self._router = router
        self.label = label
        self.budget = Budget(budget)
        self.load = Load()
        self._lock = threading.Lock()
        self._tasks: deque[Task] = deque()
        self._active = False  # the head is queued on a worker or running

    def read(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``, a call that changes nothing, after the lane's earlier calls."""
        self._push(Task(fn, args, read=True))

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` on the engine thread after the lane's earlier calls."""
        self._push(Task(fn, args, read=False))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue ``fn(*args)`` on the engine thread; the future gets its result."""
        future: Future[Any] = Future()
        self._push(Task(fn, args, read=False, future=future))
        return future

    def over_budget(self) -> str | None:
        """Why a new call from this lane should be refused, or None."""
        return self.budget.exceeded()

    def pending(self) -> int:
        with self._lock:
            return len(self._tasks)

    def run_here(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the calling thread now if the lane is idle; False if it is not.

        The lane counts as busy meanwhile, so nothing of its own runs beside it, and the
        call is charged like one a worker ran. Calls queued meanwhile go to their worker after.
        """
        with self._lock:
            if self._active:
                return False
            self._active = True
        started = time.monotonic()
        try:
            fn(*args)
        except Exception:  # as on a worker: the caller's loop must outlive any call
            logger.exception("engine call %s failed", getattr(fn, "__name__", "call"))
        finally:
            self._charge(time.monotonic() - started)
            with self._lock:
                head = self._tasks[0] if self._tasks else None
                self._active = head is not None
            if head is not None:
                self._router(head).put(self)
        return True

    def _charge(self, seconds: float) -> None:
        """A call of this lane ran for ``seconds``: its budget and its place in the queue."""
        self.budget.charge(seconds)
        self.load.add(seconds)

    def _push(self, task: Task) -> None:
        with self._lock:
            self._tasks.append(task)
            if self._active:
                return
            self._active = True
        self._router(task).put(self)

    def _head(self) -> Task:
        with self._lock:
            return self._tasks[0]

    def _done(self) -> None:
        """The head ran: hand the next call to its worker, or go idle."""
        with self._lock:
            self._tasks.popleft()
            if not self._tasks:
                self._active = False
                return
            head = self._tasks[0]
        self._router(head).put(self)


class Worker:
    """A daemon thread serving lanes one call at a time, least queue time plus load first.

    A lane's turn is fixed when it queues: the time then plus its load (engine seconds used
    lately). Among lanes queued together the least loaded goes first; a loaded lane still
    comes before lanes queued more than its load later (first come, first served among new
    lanes). ``admit(task)`` may return another worker to send the lane's head to
    instead (the reader hands a read back to the engine thread when it must not run beside
    it); ``chore()`` runs before the next call after ``poke()`` (the engine's paced poll);
    ``guard`` is a lock held around each call. Wake-ups go through a ``SimpleQueue``, one
    token per queued lane or poke: far cheaper than a ``Condition`` under the GIL.
    """

    def __init__(
        self,
        name: str,
        *,
        admit: Callable[[Task], Worker | None] | None = None,
        chore: Callable[[], None] | None = None,
        guard: threading.Lock | None = None,
    ) -> None:
        self.name = name
        self._admit = admit
        self._chore = chore
        self._guard = guard
        self._lock = threading.Lock()
        self._ready: list[tuple[float, int, Lane]] = []  # a heap: (queued at + load, order, lane)
        self._order = itertools.count()
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()  # tokens >= lanes in _ready
        self._poked = False
        self._stopping = False
        self._stopped = False
        self.running: Running | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def put(self, lane: Lane) -> None:
        entry = (time.monotonic() + lane.load.value(), next(self._order), lane)
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"{self.name} has shut down")
            heapq.heappush(self._ready, entry)
        self._wake.put(None)

    def poke(self) -> None:
        """Run the chore before the next call (or now, when idle)."""
        self._poked = True
        self._wake.put(None)

    def backlog(self) -> int:
        with self._lock:
            return len(self._ready)

    def stop(self, timeout: float) -> bool:
        """Finish the queued calls, then end the thread; False if it is still busy after ``timeout``."""
        self._stopping = True
        self._wake.put(None)
        if threading.get_ident() != self._thread.ident:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            self._wake.get()
            with self._lock:
                poked, self._poked = self._poked, False
                lane = heapq.heappop(self._ready)[2] if self._ready else None
            if poked and self._chore is not None:
                self._run("engine", "poll", self._chore)
            if lane is not None:
                self._serve(lane)
            if self._stopping:
                with self._lock:
                    if not self._ready:
                        self._stopped = True
                        return

    def _serve(self, lane: Lane) -> None:
        task = lane._head()
        if self._admit is not None:
            other = self._admit(task)
            if other is not None and other is not self:
                other.put(lane)
                return
        started = time.monotonic()
        if self._guard is not None:
            with self._guard:
                self._run(lane.label, getattr(task.fn, "__name__", "call"), task.fn, *task.args, future=task.future)
        else:
            self._run(lane.label, getattr(task.fn, "__name__", "call"), task.fn, *task.args, future=task.future)
        lane._charge(time.monotonic() - started)
        lane._done()

    def _run(self, label: str, what: str, fn: Callable[..., Any], *args: Any, future: Future[Any] | None = None) -> None:
        self.running = _current.running = Running(label, time.monotonic(), what)
        try:
            if future is not None and not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args)
            except Exception as exc:  # the worker must outlive any call
                if future is None:
                    logger.exception("engine call %s failed", what)
                else:
                    future.set_exception(exc)
            else:
                if future is not None:
                    future.set_result(result)
        finally:
            elapsed = self.running.seconds()
            if self.running.reported:
                logger.warning("engine call finished after %.1f s: %s (%s)", elapsed, self.running.describe(), label)
            self.running = _current.running = None
