"""Spread items over parallel workers (one per remote server) with requeue on loss and per-item deadlines.

Each worker thread pulls items from one shared queue. A worker whose server breaks mid-item puts the item
back (up to `max_attempts` tries); a worker that can no longer get a server stops and leaves its item to
the others; an item running past its deadline is failed and its worker abandoned (and replaced). Every
server acquired is released as soon as its item is done. With a `capacity` (servers available now), more
workers are started as servers join. When no worker is left, the remaining items fail with the last reason
a worker gave.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


class ServerLost(Exception):
    """The server broke while running an item: retry the item elsewhere."""


class NoServer(Exception):
    """This worker cannot get a server any more: it stops and its item goes back to the queue."""


class ItemFailed(Exception):
    """The item itself failed (e.g. timed out on the server): final, no retry."""


@dataclass
class _Running:
    worker: int
    started: float


class Dispatcher:
    """For every item on `workers` threads: `prepare(item)`, `acquire()` a server, `run(item, prepared, server)`.

    `prepare` runs on the host (its exceptions fail the item); `acquire` raises NoServer when this worker
    should stop; only `run` is under the item's deadline: it returns the answer dict or raises ServerLost
    (retry elsewhere) or ItemFailed (final); any other exception counts as ServerLost. `release(server)`
    follows every `run`. `capacity()`, asked every `poll_s` seconds, is how many workers may run now.
    """

    def __init__(self, items: list[str], prepare: Callable[[str], object], acquire: Callable[[], object],
                 run: Callable[[str, object, object], dict], workers: int, deadline_s: float,
                 max_attempts: int = 3, release: Callable[[object], None] | None = None,
                 capacity: Callable[[], int] | None = None, poll_s: float = 2.0) -> None:
        self._prepare, self._acquire, self._run, self._release = prepare, acquire, run, release
        self._deadline_s, self._max_attempts = deadline_s, max_attempts
        self._capacity, self._poll_s = capacity, poll_s
        self._next_poll = time.monotonic() + poll_s
        self._todo: queue.Queue[str] = queue.Queue()
        for item in items:
            self._todo.put(item)
        self._answers: queue.Queue[tuple[str, dict]] = queue.Queue()
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._attempts = dict.fromkeys(items, 0)
        self._final: set[str] = set()
        self._live: set[int] = set()
        self._abandoned: set[int] = set()
        self._next_worker = 0
        self._stop = threading.Event()
        self._gave_up = ""
        for _ in range(max(1, workers)):
            self._spawn()

    def answers(self) -> Iterator[tuple[str, dict]]:
        """(item, answer) as items finish, each exactly once; answers are {"error": ...} for failed items."""
        given = 0
        try:
            while given < len(self._attempts):
                try:
                    answer = self._answers.get(timeout=0.2)
                    yield answer
                    given += 1
                except queue.Empty:
                    pass
                self._expire_overdue()
                self._follow_capacity()
                with self._lock:
                    stranded = not self._live and self._answers.empty()
                if stranded:
                    for answer in self._fail_remaining():
                        yield answer
                        given += 1
        finally:
            self._stop.set()

    def _spawn(self) -> None:
        with self._lock:
            worker = self._next_worker
            self._next_worker += 1
            self._live.add(worker)
        threading.Thread(target=self._work, args=(worker,), name=f"hwlat-remote-{worker}", daemon=True).start()

    def _finish(self, item: str, answer: dict, worker: int | None = None) -> bool:
        """Record the final answer of `item` unless it was already final or taken from `worker`."""
        with self._lock:
            running = self._running.get(item)
            if item in self._final or (worker is not None and (running is None or running.worker != worker)):
                return False
            self._running.pop(item, None)
            self._final.add(item)
        self._answers.put((item, answer))
        return True

    def _requeue(self, item: str, worker: int) -> None:
        with self._lock:
            running = self._running.get(item)
            if running is None or running.worker != worker:
                return
            del self._running[item]
        self._todo.put(item)

    def _work(self, worker: int) -> None:
        try:
            while not self._stop.is_set() and worker not in self._abandoned:
                try:
                    item = self._todo.get(timeout=0.2)
                except queue.Empty:
                    if len(self._final) == len(self._attempts):
                        return
                    continue
                if not self._handle(item, worker):
                    return
        finally:
            with self._lock:
                self._live.discard(worker)

    def _handle(self, item: str, worker: int) -> bool:
        """Prepare, acquire a server for and run one item; False when this worker should stop."""
        try:
            prepared = self._prepare(item)
        except Exception as exc:  # host-side failure of this item only (e.g. it does not compile)  # noqa: BLE001
            self._finish(item, {"error": _describe(exc)})
            return True
        try:
            server = self._acquire()
        except Exception as exc:  # NoServer, or anything that keeps this worker from reaching a server  # noqa: BLE001
            self._gave_up = str(exc) if isinstance(exc, NoServer) else _describe(exc)
            self._todo.put(item)
            return False
        try:
            self._run_on(item, prepared, server, worker)
        finally:
            if self._release is not None:
                self._release(server)
        return True

    def _run_on(self, item: str, prepared: object, server: object, worker: int) -> None:
        """Run one item on an acquired server and record its answer, or put it back for another try."""
        with self._lock:
            if item in self._final:
                return
            self._running[item] = _Running(worker, time.monotonic())
            self._attempts[item] += 1
            attempt = self._attempts[item]
        try:
            answer = self._run(item, prepared, server)
        except ItemFailed as exc:
            self._finish(item, {"error": str(exc)}, worker)
        except Exception as exc:  # ServerLost or an unexpected break: the item may succeed elsewhere  # noqa: BLE001
            if attempt >= self._max_attempts:
                last = str(exc) if isinstance(exc, ServerLost) else _describe(exc)
                self._finish(item, {"error": f"failed {attempt} times, last: {last}"}, worker)
            else:
                self._requeue(item, worker)
        else:
            self._finish(item, answer, worker)

    def _expire_overdue(self) -> None:
        """Fail items running past the deadline; their workers are abandoned and replaced."""
        now = time.monotonic()
        with self._lock:
            overdue = [(item, r) for item, r in self._running.items() if now - r.started > self._deadline_s]
        for item, running in overdue:
            message = f"no answer within {self._deadline_s:.0f} s; the server was abandoned"
            if self._finish(item, {"error": message}, running.worker):
                with self._lock:
                    self._live.discard(running.worker)
                    self._abandoned.add(running.worker)
                self._spawn()

    def _follow_capacity(self) -> None:
        """Every `poll_s`: start workers up to `capacity()` and the unfinished items (not once all have stopped)."""
        if self._capacity is None or time.monotonic() < self._next_poll or not self._live:
            return
        wanted = self._capacity()
        self._next_poll = time.monotonic() + self._poll_s
        with self._lock:
            missing = min(wanted, len(self._attempts) - len(self._final)) - len(self._live)
        for _ in range(missing):
            self._spawn()

    def _fail_remaining(self) -> Iterator[tuple[str, dict]]:
        reason = self._gave_up or "no worker left"
        for item in self._attempts:
            with self._lock:
                if item in self._final:
                    continue
                self._final.add(item)
            yield item, {"error": reason}


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
