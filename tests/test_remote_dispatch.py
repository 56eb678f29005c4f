"""The work spreading behind remote profiling, with fake servers: requeue, retries, deadlines, give-up."""

from __future__ import annotations

import threading
import time

from hwlat.profilers._dispatch import Dispatcher, ItemFailed, NoServer, ServerLost

ITEMS = [f"arch{i}" for i in range(8)]


def run_all(dispatcher: Dispatcher) -> dict[str, dict]:
    answers = list(dispatcher.answers())
    assert len(answers) == len({item for item, _ in answers}), "an item was answered twice"
    return dict(answers)


def test_every_item_answered_once_on_parallel_workers():
    seen_threads, lock = set(), threading.Lock()

    def run(item, prepared, server):
        with lock:
            seen_threads.add(threading.current_thread().name)
        time.sleep(0.05)
        return {"value": prepared}

    answers = run_all(Dispatcher(ITEMS, str.upper, lambda: "server", run, workers=3, deadline_s=10))
    assert answers == {item: {"value": item.upper()} for item in ITEMS}
    assert len(seen_threads) == 3


def test_lost_server_requeues_only_its_item_and_nothing_is_lost():
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def run(item, prepared, server):
        with lock:
            calls[item] = calls.get(item, 0) + 1
        if item == "arch3" and calls[item] == 1:
            raise ServerLost("connection reset")
        return {"ok": True}

    answers = run_all(Dispatcher(ITEMS, str, lambda: "s", run, workers=2, deadline_s=10))
    assert all(answer == {"ok": True} for answer in answers.values()) and set(answers) == set(ITEMS)
    assert calls["arch3"] == 2 and all(calls[item] == 1 for item in ITEMS if item != "arch3")


def test_item_failing_on_every_server_fails_after_max_attempts():
    def run(item, prepared, server):
        if item == "arch0":
            raise RuntimeError("segfault on load")
        return {"ok": True}

    answers = run_all(Dispatcher(ITEMS, str, lambda: "s", run, workers=2, deadline_s=10, max_attempts=3))
    assert answers["arch0"]["error"].startswith("failed 3 times") and "segfault on load" in answers["arch0"]["error"]
    assert sum("error" in answer for answer in answers.values()) == 1


def test_item_failure_and_prepare_failure_are_final_without_retry():
    calls = []

    def prepare(item):
        if item == "arch1":
            raise ValueError("does not compile")
        return item

    def run(item, prepared, server):
        calls.append(item)
        if item == "arch2":
            raise ItemFailed("timed out after 1 s")
        return {"ok": True}

    answers = run_all(Dispatcher(ITEMS, prepare, lambda: "s", run, workers=2, deadline_s=10))
    assert answers["arch1"] == {"error": "ValueError: does not compile"} and "arch1" not in calls
    assert answers["arch2"] == {"error": "timed out after 1 s"} and calls.count("arch2") == 1


def test_when_no_server_answers_the_rest_fail_with_the_reason():
    served = []

    def acquire():
        if len(served) >= 3:
            raise NoServer("device 'pi' stopped answering: no server with key 'pi'")
        return "s"

    def run(item, prepared, server):
        served.append(item)
        return {"ok": True}

    answers = run_all(Dispatcher(ITEMS, str, acquire, run, workers=2, deadline_s=10))
    assert sum(answer == {"ok": True} for answer in answers.values()) == 3
    errors = [answer["error"] for answer in answers.values() if "error" in answer]
    assert len(errors) == 5 and all("device 'pi' stopped answering" in error for error in errors)


def test_hung_server_is_abandoned_after_the_deadline_and_replaced():
    release = threading.Event()

    def run(item, prepared, server):
        if item == "arch0":
            release.wait(30)  # a server that never answers
            return {"late": True}
        return {"ok": True}

    started = time.monotonic()
    answers = run_all(Dispatcher(ITEMS, str, lambda: "s", run, workers=1, deadline_s=0.5))
    release.set()
    assert answers["arch0"]["error"].startswith("no answer within")
    assert all(answers[item] == {"ok": True} for item in ITEMS[1:]), "the replacement worker did not take over"
    assert time.monotonic() - started < 10


def test_every_acquired_server_is_released_once_whatever_the_item_did():
    acquired, released, tries, lock = [], [], dict.fromkeys(ITEMS, 0), threading.Lock()

    def acquire():
        with lock:
            acquired.append(object())
            return acquired[-1]

    def release(server):
        with lock:
            released.append(server)

    def run(item, prepared, server):
        with lock:
            tries[item] += 1
        if item == "arch1":
            raise ItemFailed("timed out after 1 s")
        if item == "arch2" and tries[item] == 1:
            raise ServerLost("connection reset")
        if item == "arch3":
            raise RuntimeError("unexpected")
        return {"ok": True}

    answers = run_all(Dispatcher(ITEMS, str, acquire, run, workers=2, deadline_s=10, release=release))
    assert set(answers) == set(ITEMS) and len(acquired) == len(ITEMS) + 1 + 2  # arch2 once more, arch3 twice
    assert sorted(map(id, released)) == sorted(map(id, acquired)), "a server was not released, or twice"


class Concurrency:
    """A fake `run` taking `seconds` per item that records the most items running and workers alive at once."""

    def __init__(self, seconds: float, on_item=None) -> None:
        self.seconds, self.on_item = seconds, on_item
        self.running = self.most = self.workers = 0
        self.lock = threading.Lock()

    def __call__(self, item, prepared, server) -> dict:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.workers = max(self.workers, workers_alive())
        if self.on_item:
            self.on_item(item)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.workers = max(self.workers, workers_alive())
        return {"ok": True}


def test_workers_follow_servers_that_join_mid_run():
    servers = [1]

    def join(item):
        if item == "arch1":
            servers[0] = 3  # two more servers registered

    run = Concurrency(0.3, join)
    answers = run_all(Dispatcher(ITEMS, str, lambda: "s", run, workers=1, deadline_s=10,
                                 capacity=lambda: servers[0], poll_s=0.05))
    assert set(answers) == set(ITEMS)
    assert run.most == 3, f"{run.most} items ran at once with 3 servers registered"


def workers_alive() -> int:
    return sum(thread.name.startswith("hwlat-remote-") for thread in threading.enumerate())


def wait_workers_gone() -> None:
    """Idle workers of a finished dispatcher leave within a fraction of a second."""
    deadline = time.monotonic() + 5
    while workers_alive():
        assert time.monotonic() < deadline, "workers of an earlier dispatcher are still alive"
        time.sleep(0.05)


def test_workers_never_outnumber_servers_or_unfinished_items():
    wait_workers_gone()
    few = Concurrency(0.5)
    answers = run_all(Dispatcher(ITEMS[:3], str, lambda: "s", few, workers=1, deadline_s=10,
                                 capacity=lambda: 50, poll_s=0.05))
    assert set(answers) == set(ITEMS[:3]) and few.most == 3 and few.workers <= 3
    wait_workers_gone()
    many = Concurrency(0.3)
    answers = run_all(Dispatcher(ITEMS, str, lambda: "s", many, workers=1, deadline_s=10,
                                 capacity=lambda: 2, poll_s=0.05))
    assert set(answers) == set(ITEMS) and many.most == 2 and many.workers == 2
