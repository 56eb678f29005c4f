"""A stage process: pinned to its side's cores, it times segments and codecs, and runs its pipeline stage.

In a pipeline run each stage has a receiver thread (reads messages, holds each for its incoming link's one-way
delay), a compute thread (decode, run the segment, encode) and a sender thread (the writer paced at its outgoing
link's rate), so transfers overlap computation as on a real link. The device (first stage) feeds inputs and
receives the outputs back from the last stage.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass

from hwlat._errors import HwlatError
from hwlat.profilers._worker import THREAD_ENV_VARS
from hwlat.split._sides import Side

#: how long a thread may hold the GIL while another waits: Python's default (5 ms) would delay a stage's
#: receiver or sender thread behind its compute thread's Python code by up to that much
SWITCH_INTERVAL_S = 1e-4


@dataclass(frozen=True)
class StageConfig:
    """One stage of a pipeline run: its segment (None: forwards its input) and its connections."""

    start: object  # CutPoint whose tensors come in
    end: object  # CutPoint whose tensors go out
    is_device: bool
    downstream_port: int | None
    link: object | None  # Link of the outgoing connection: its rate paces the writer (None: device-only run)
    in_link: object | None  # Link of the incoming connection: its RTT/2 delays each message (None: device-only run)
    compression: str
    returns_result: bool  # the last stage: send the model's outputs back to the device, uncompressed
    spin_ms: float = 0.0  # busy-wait this long after each segment run (calibration: a compute stage without a model)


def idle_timer(run_once, idle_ms: float):
    """Timer of calls that each follow `idle_ms` of sleep, as a stage waiting for the network runs (sleeps untimed).

    Cores that idled run the next call slower (caches, frequency, the hypervisor), by tens of percent here.
    """
    def timed(number: int) -> int:
        total = 0
        for _ in range(number):
            time.sleep(idle_ms / 1e3)
            start = time.perf_counter_ns()
            run_once()
            total += time.perf_counter_ns() - start
        return total

    return timed


def spinning(run, spin_ms: float):
    """`run` followed by busy work until `spin_ms` after its start: the core stays busy, as during compute.

    The work (hashing) releases the GIL like ONNX Runtime does; a pure-Python loop would hold it and, measured
    here, add 1-4 ms per message for spins of 2-12 ms that real segments of that length do not show.
    """
    if spin_ms <= 0:
        return run
    block = bytes(16384)

    def spun(arrays):
        until = time.perf_counter() + spin_ms / 1e3
        outputs = run(arrays)
        while time.perf_counter() < until:
            hashlib.sha256(block).digest()
        return outputs

    return spun


class _Stage:
    """The state of one stage process: the model, cached segment runners (ORT sessions, TVM builds), the pipeline."""

    def __init__(self, side: Side, tvm_preloaded: bool = False) -> None:
        self.side = side
        self.segmenter = None
        self.runners: dict[tuple[int, int], object] = {}
        self.listener = None
        self.pipeline: _Pipeline | None = None
        self.tvm_preloaded = tvm_preloaded  # tvm was imported before the thread variables were set
        self.model_kernels: tuple[int, int] | None = None  # whole-model kernels the side's tuning records schedule
        self.remote = None  # RemoteSegments of a side on a remote device, connected at the first segment timed

    def load(self, path: str, batch_size: int) -> dict:
        """Index the model's segments; a side with tuning records checks them against the whole model first.

        Records matching none of the model's kernels are an error (another model, batch size or target); a segment
        may match few or none (its kernels the cut made), which `describe` reports per segment.
        """
        from hwlat.split._cuts import static_shapes
        from hwlat.split._models import SplitModel
        from hwlat.split._segments import Segmenter, input_shapes

        graph = static_shapes(SplitModel("", path).load(), batch_size)
        if self.side.tuning_records:
            from hwlat.profilers.runtimes._tvm import apply_records, import_onnx
            from hwlat.split._remote import remote_target

            _, tuned, kernels = apply_records(import_onnx(graph, input_shapes(graph)), remote_target(self.side),
                                              self.side.tuning_records, f"{path} at batch {batch_size}")
            self.model_kernels = (tuned, kernels)
        self.segmenter = Segmenter(graph)
        self.runners.clear()
        return {"loaded": path}

    def compute(self, start, end):
        """A function from the input arrays (start's order) to the output arrays (end's order), built once."""
        key = (start.index, end.index)
        if key not in self.runners:
            from hwlat.split._segments import segment_runner

            self.runners[key] = segment_runner(self.segmenter.segment(start, end), list(start.tensors),
                                               list(end.tensors), self.side)
        return self.runners[key]

    def describe(self) -> dict:
        """What this stage runs with: its runtime, thread variables, built segments, whether tvm was loaded early;
        with tuning records, their folder and (scheduled, all) kernels of the whole model and of each built segment."""
        from hwlat.split._segments import TvmSegment

        return {"runtime": self.side.runtime, "spec": self.side.spec, "remote": self.side.remote,
                "segments": sorted(self.runners) if not self.remote else sorted(self.remote.timers),
                "threads_env": {var: os.environ.get(var) for var in THREAD_ENV_VARS},
                "tvm_loaded": "tvm" in sys.modules, "tvm_preloaded": self.tvm_preloaded,
                "tvm_records": self.side.tuning_records, "model_kernels": self.model_kernels,
                "segment_kernels": {key: (run.scheduled, run.kernels) for key, run in sorted(self.runners.items())
                                    if isinstance(run, TvmSegment) and run.kernels is not None}}

    def time_segment(self, start, end, arrays: list, protocol: dict, idle_ms: float = 0.0) -> dict:
        """Statistics of the segment's run time, each run after `idle_ms` of sleep (0: back to back)."""
        from hwlat.profilers._protocol import MeasurementProtocol, measure, perf_counter_timer

        if start.index == end.index:
            return {"median_ms": 0.0, "ci_rel": 0.0, "n": 0}
        if self.side.remote:  # on the board, back to back
            timer = self.remote_segments().timer((start.index, end.index), self.segmenter.segment(start, end),
                                                 list(start.tensors), arrays)
            return measure(timer, MeasurementProtocol(**protocol)).as_dict()
        run = self.compute(start, end)
        timer = perf_counter_timer(lambda: run(arrays)) if idle_ms <= 0 else idle_timer(lambda: run(arrays), idle_ms)
        return measure(timer, MeasurementProtocol(**protocol)).as_dict()

    def remote_segments(self):
        """The RPC session of a side on a remote device (connected on first use) and its segment timers."""
        if self.remote is None:
            from hwlat.split._remote import RemoteSegments

            self.remote = RemoteSegments(self.side)
        return self.remote

    def close(self) -> None:
        """End the remote device's RPC session, if any."""
        if self.remote is not None:
            self.remote.close()
            self.remote = None

    def time_codec(self, arrays: list, compression: str, protocol: dict) -> dict:
        from hwlat.profilers._protocol import MeasurementProtocol, measure, perf_counter_timer
        from hwlat.split._codec import decode, encode

        chosen = MeasurementProtocol(**protocol)
        message = encode(arrays, compression)
        return {"bytes": len(message),
                "encode_ms": measure(perf_counter_timer(lambda: encode(arrays, compression)), chosen).median_ms,
                "decode_ms": measure(perf_counter_timer(lambda: decode(message)), chosen).median_ms}

    def listen(self) -> dict:
        from hwlat.split._network import listener

        if self.listener is None:
            self.listener = listener()
        return {"port": self.listener.getsockname()[1]}

    def run(self, config: StageConfig) -> dict:
        """Set the stage up; the device answers at once, other stages serve until their input closes (then answer
        with their compute spans, see `_Pipeline.spans`)."""
        if self.side.remote and config.start.index != config.end.index:
            raise HwlatError(f"segments of a remote device ({self.side.spec}) are timed on it, not run in a pipeline")
        self.pipeline = _Pipeline(self, config)
        if config.is_device:
            return {"ready": True}
        try:
            served = self.pipeline.serve()
            spans = self.pipeline.spans
        finally:
            self.pipeline = None
        return {"served": served, "spans": spans}


class _Pipeline:
    """The sockets and threads of one stage in one pipeline run.

    `spans` records (kind, start, end) in `time.perf_counter` seconds, one clock for every process of this machine:
    each segment run ("compute") and, on the device, each single input's round ("infer"), so a real run's latency
    can be split into its parts (`hwlat.split._execute.measured_parts`).
    """

    def __init__(self, stage: _Stage, config: StageConfig) -> None:
        from hwlat.split._network import connect

        self.config = config
        self.spans: list[tuple[str, float, float]] = []
        self.run = self._traced("compute", spinning(stage.compute(config.start, config.end), config.spin_ms))
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.out_sock = self.in_sock = None
        if config.downstream_port is not None:
            self.out_sock = connect(config.downstream_port)
            self._thread(self._send_loop)
        if config.in_link is not None:  # networked: the device receives the results, other stages their inputs
            self.in_sock, _ = stage.listener.accept()
            self._thread(self._receive_loop)

    def _traced(self, kind: str, function):
        """`function` recording a span of `kind` per call."""
        def traced(*args):
            start = time.perf_counter()
            result = function(*args)
            self.spans.append((kind, start, time.perf_counter()))
            return result

        return traced

    def _thread(self, target) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _send_loop(self) -> None:
        from hwlat.split._network import PacedWriter

        writer = PacedWriter(self.out_sock, self.config.link)
        while (message := self.outbox.get()) is not None:
            writer.send(message)
        self.out_sock.close()

    def _receive_loop(self) -> None:
        from hwlat.split._network import receive_message

        delay = self.config.in_link.one_way_ms / 1e3
        while (message := receive_message(self.in_sock)) is not None:
            self.inbox.put((time.perf_counter() + delay, message))
        self.in_sock.close()
        self.inbox.put(None)

    def _take(self) -> list | None:
        """The next incoming arrays after the link delay, or None at the end of the stream."""
        from hwlat.split._codec import decode
        from hwlat.split._network import wait_until

        item = self.inbox.get()
        if item is None:
            return None
        wait_until(item[0])
        return decode(item[1])

    def _give(self, arrays: list) -> None:
        from hwlat.split._codec import encode

        self.outbox.put(encode(arrays, "none" if self.config.returns_result else self.config.compression))

    def serve(self) -> int:
        """Non-device stages: compute every message until the upstream closes, then close downstream."""
        served = 0
        while (arrays := self._take()) is not None:
            self._give(self.run(arrays))
            served += 1
        self.close()
        return served

    def infer(self, inputs: list) -> list:
        """Device: one input through the whole pipeline, outputs back (or local only); recorded as an "infer" span."""
        start = time.perf_counter()
        outputs = self.run(inputs)
        if self.out_sock is not None:
            self._give(outputs)
            outputs = self._take()
        self.spans.append(("infer", start, time.perf_counter()))
        return outputs

    def stream(self, inputs: list, count: int, window: int) -> list[float]:
        """Device: `count` inputs with at most `window` in flight; completion times (perf_counter, s)."""
        done: list[float] = []
        in_flight = 0
        for _ in range(count):
            if self.out_sock is None:
                self.run(inputs)
                done.append(time.perf_counter())
                continue
            if in_flight >= window:
                self._take()
                done.append(time.perf_counter())
                in_flight -= 1
            self._give(self.run(inputs))
            in_flight += 1
        for _ in range(in_flight):
            self._take()
            done.append(time.perf_counter())
        return done

    def close(self) -> None:
        """Close the outgoing side, wait for the incoming side to close, join the threads."""
        if self.out_sock is not None:
            self.outbox.put(None)
        if self.config.is_device and self.in_sock is not None:
            while self._take() is not None:
                pass
        for thread in self.threads:
            thread.join(timeout=60)


def _serve(conn, side: Side) -> None:
    """Stage process main loop: answer commands until None (or the parent goes away).

    A TVM side imports tvm here, after the thread variables are set (TVM_NUM_THREADS), so start-up fails in one line
    when TVM cannot be loaded.
    """
    tvm_preloaded = "tvm" in sys.modules
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(side.threads)
    if side.cpus:
        os.sched_setaffinity(0, side.cpus)
    from hwlat.split._network import set_timer_slack_ns

    set_timer_slack_ns()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if side.runtime == "tvm":
        from hwlat.profilers.runtimes._tvm import require_tvm

        try:
            require_tvm()
        except HwlatError as exc:
            conn.send({"error": str(exc)})
            return
    stage = _Stage(side, tvm_preloaded)
    conn.send({"ready": True})
    try:
        while (job := conn.recv()) is not None:
            try:
                conn.send(_answer(stage, job))
            except HwlatError as exc:
                conn.send({"error": str(exc)})
            except Exception as exc:  # a failing model must come back as a message, not a dead worker
                conn.send({"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"})
    except (BrokenPipeError, EOFError):
        return
    finally:
        stage.close()


def _answer(stage: _Stage, job: dict) -> dict:
    from hwlat.profilers._protocol import MeasurementProtocol, measure

    op = job["op"]
    if op == "load":
        return stage.load(job["path"], job["batch_size"])
    if op == "time":
        return stage.time_segment(job["start"], job["end"], job["arrays"], job["protocol"], job.get("idle_ms", 0.0))
    if op == "codec":
        return stage.time_codec(job["arrays"], job["compression"], job["protocol"])
    if op == "repeat_segment":
        run, arrays = stage.compute(job["start"], job["end"]), job["arrays"]
        return {"runs": _repeat(lambda: run(arrays), job["seconds"])}
    if op == "listen":
        return stage.listen()
    if op == "describe":
        return stage.describe()
    if op == "run":
        return stage.run(job["config"])
    pipeline = stage.pipeline
    if pipeline is None:
        raise HwlatError(f"stage command {op!r} needs a running pipeline")
    if op == "latency":
        inputs = job["inputs"]

        def timer(number: int) -> int:
            start = time.perf_counter_ns()
            for _ in range(number):
                pipeline.infer(inputs)
            return time.perf_counter_ns() - start

        pipeline.spans.clear()
        stats = measure(timer, MeasurementProtocol(**job["protocol"])).as_dict()
        spans, pipeline.spans = pipeline.spans, []
        return {**stats, "spans": spans}
    if op == "repeat":
        inputs = job["inputs"]
        return {"runs": _repeat(lambda: pipeline.infer(inputs), job["seconds"])}
    if op == "throughput":
        return {"done": pipeline.stream(job["inputs"], job["count"], job["window"])}
    if op == "stop":
        pipeline.close()
        stage.pipeline = None
        return {"stopped": True}
    raise HwlatError(f"unknown stage command {op!r}")


def _repeat(run_once, seconds: float) -> int:
    """Call `run_once` back to back for about `seconds` (at least once); how many calls were made."""
    until, runs = time.perf_counter() + seconds, 0
    while runs == 0 or time.perf_counter() < until:
        run_once()
        runs += 1
    return runs


class StageWorker:
    """Parent-side handle of one stage process; `call` sends a command and waits for its answer."""

    def __init__(self, side: Side, timeout_s: float = 600.0) -> None:
        self.side = side
        self.timeout_s = timeout_s
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, side), daemon=True)
        self.process.start()
        child.close()
        self.receive("start-up")

    def send(self, job: dict) -> None:
        self._conn.send(job)

    def receive(self, what: str) -> dict:
        if not self._conn.poll(self.timeout_s):
            raise HwlatError(f"stage process on {self.side.spec} gave no answer within {self.timeout_s:.0f} s ({what})")
        try:
            answer = self._conn.recv()
        except EOFError:
            raise HwlatError(f"stage process on {self.side.spec} died during {what} "
                             f"(exit code {self.process.exitcode})") from None
        if "error" in answer:
            raise HwlatError(f"stage on {self.side.spec}: {answer['error']}")
        return answer

    def call(self, op: str, **job) -> dict:
        self.send({"op": op, **job})
        return self.receive(op)

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._conn.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
