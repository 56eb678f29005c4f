"""A split stage on a remote board: its segments compiled on this host for the board's TVM target, timed on the board.

The board is a device registered with ``hwlat devices add`` (TVM RPC tracker, key, target, cross compiler), as for
``hwlat profile --device``. The stage process holds one RPC session while it lives; each segment is compiled once,
linked for the board, uploaded, and timed by the board's `time_evaluator` under the profilers' protocol: back to
back, on the board's clock. Codecs and the transport are measured on this host, and a plan with a remote stage is
predicted, not run for real (the board runs no hwlat stage process).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hwlat.profilers._protocol import Timer
from hwlat.split._sides import Side

#: seconds a remote stage waits for a free server of its device at start-up
CONNECT_TIMEOUT_S = 60.0


def remote_target(side: Side):
    """The TVM target a tvm side compiles for: its remote device's, or this host's CPU."""
    from hwlat.profilers.runtimes._tvm import tvm_target

    if side.remote is None:
        return tvm_target(None, side.threads)
    from hwlat.devices import DeviceRegistry

    return tvm_target(DeviceRegistry().get(side.remote).connection.get("target"), side.threads)


class RemoteSegments:
    """The RPC session of a stage on a remote device, and a timer per segment built for it (`timer`)."""

    def __init__(self, side: Side, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        from hwlat.devices import DeviceRegistry
        from hwlat.devices._cross import link_compiler
        from hwlat.devices._rpc import request_session, rpc_address

        device = DeviceRegistry().get(side.remote)
        tracker, key = rpc_address(device)
        self.side = side
        self.cc = device.connection.get("cc")
        link_compiler(device.connection.get("target") or {}, self.cc, device.name)
        self.target = remote_target(side)
        self.session = request_session(tracker, key, connect_timeout_s)
        self.folder = Path(tempfile.mkdtemp(prefix="hwlat-split-remote-"))
        self.timers: dict[tuple[int, int], Timer] = {}

    def timer(self, key: tuple[int, int], model_bytes: bytes, inputs: list[str], arrays: list) -> Timer:
        """Timer of the segment `model_bytes` (inputs named `inputs`, values `arrays`) on the board, built once per
        `key`; with the side's tuning records applied as on a local tvm stage."""
        if key not in self.timers:
            import onnx
            import tvm

            from hwlat.profilers._remote import export_library, remote_timer
            from hwlat.profilers.runtimes._tvm import apply_records, import_onnx
            from hwlat.split._segments import input_shapes

            model = onnx.ModelProto.FromString(model_bytes)
            shapes = input_shapes(model)
            mod = import_onnx(model, shapes)
            if self.side.tuning_records:
                mod, _, _ = apply_records(mod, self.target, self.side.tuning_records)
            library = self.folder / f"segment-{key[0]}-{key[1]}.so"
            export_library(tvm.compile(mod, target=self.target), library, self.cc)
            ordered = [arrays[inputs.index(name)] for name in shapes]  # the VM takes the graph's inputs in order
            self.timers[key] = remote_timer(self.session.rpc, library, self.side.threads,
                                            self.target.get_target_device_type(), ordered)
        return self.timers[key]

    def close(self) -> None:
        """End the RPC session and remove the built libraries."""
        self.timers.clear()
        self.session.close()
        shutil.rmtree(self.folder, ignore_errors=True)
