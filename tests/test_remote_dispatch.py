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
