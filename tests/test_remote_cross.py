"""Boards of another architecture: compile on this host for their target, link with the `--cc` of `devices add`.

Compiling for aarch64 needs nothing but TVM (its LLVM has every backend); linking the library needs a cross
compiler, so the test that produces an aarch64 library runs where `aarch64-linux-gnu-gcc` is installed
(Debian/Ubuntu: `apt-get install gcc-aarch64-linux-gnu`) and is skipped, saying so, elsewhere.
"""

from __future__ import annotations

import json
import platform
import shutil
import struct
from pathlib import Path

import pytest

from hwlat._errors import HwlatError
from hwlat._home import hwlat_home
from hwlat.devices import Device, DeviceRegistry
from hwlat.devices._rpc import target_fingerprint
from hwlat.profilers import MeasurementProtocol
from hwlat.profilers._remote import measure_remote
from hwlat.profilers._workload import Workload
from hwlat.profilers.runtimes._tvm import TvmRuntime

pytest.importorskip("tvm")

CROSS_CC = "aarch64-linux-gnu-gcc"
AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "num-cores": 4}
# a target this host's own compiler cannot link for
FOREIGN = AARCH64 if platform.machine() not in ("aarch64", "arm64") else {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}
ARCH = "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
QUICK = MeasurementProtocol(warmup_runs=2, warmup_seconds=0.0, min_repeats=10, time_budget_s=0.3)
UNREACHABLE = "127.0.0.1:9"  # discard port: nothing listens


def elf_header(path: Path) -> tuple[int, int, int]:
    """(ELF class: 2 = 64-bit, e_type: 3 = shared object, e_machine: 183 = AArch64, 62 = x86-64) of a file."""
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    e_type, e_machine = struct.unpack("<HH", header[16:20])
    return header[4], e_type, e_machine


def remote_device(name: str, target: dict, **extra: str) -> Device:
    return Device(name, "rpc", target_fingerprint(target),
                  {"tracker": UNREACHABLE, "key": name, "target": target, **extra})


def test_compiles_for_a_foreign_target_on_this_host_and_names_the_missing_cross_compiler():
    executable = TvmRuntime(1, target=FOREIGN).build(Workload("nb201", ARCH, 1))
    assert executable is not None  # Relax + LLVM compile for the board's CPU needs no cross compiler
    board = remote_device("board", FOREIGN)
    with pytest.raises(HwlatError) as error:  # checked when the run is set up, before any server is asked
        measure_remote([ARCH], space="nb201", batch_size=1, engine=TvmRuntime(1, target=FOREIGN), device=board,
                       protocol=QUICK, workers=1, item_timeout_s=60, connect_timeout_s=2)
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert f"device 'board' targets {FOREIGN['mtriple']} but this host's compiler" in message
    assert f"pass --cc with a cross compiler for {FOREIGN['mtriple'].split('-')[0]}" in message

    gone = remote_device("gone", AARCH64, cc="aarch64-linux-gnu-gcc-removed")
    with pytest.raises(HwlatError, match=r"^device 'gone': cross compiler 'aarch64-linux-gnu-gcc-removed' not "
                                         r"found on PATH \(--cc\)$"):
        measure_remote([ARCH], space="nb201", batch_size=1, engine=TvmRuntime(1, target=AARCH64), device=gone,
                       protocol=QUICK, workers=1, item_timeout_s=60, connect_timeout_s=2)


def test_devices_add_rejects_a_cc_that_builds_for_another_architecture(hwlat):
    if not shutil.which("g++"):
        pytest.skip("no g++ on this host")
    code, _, err = hwlat("devices", "add", "pi", "--tracker", UNREACHABLE, "--key", "pi", "--target",
                         json.dumps(FOREIGN), "--cc", "g++")
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert f"targets {FOREIGN['mtriple']} but --cc g++ builds for" in err and "e.g. --cc" in err
    assert DeviceRegistry().names() == ["local"]


@pytest.mark.skipif(not shutil.which(CROSS_CC), reason=f"{CROSS_CC} not installed (apt-get install "
                                                       "gcc-aarch64-linux-gnu): no aarch64 library can be linked")
def test_links_an_aarch64_library_with_the_cc_given_to_devices_add(hwlat):
    code, _, err = hwlat("devices", "add", "pi", "--tracker", UNREACHABLE, "--key", "pi", "--target",
                         json.dumps(AARCH64), "--cc", CROSS_CC)
    assert code == 0, err
    device = DeviceRegistry().get("pi")
    assert device.connection["cc"] == CROSS_CC and device.fingerprint["cpu_arch"] == "aarch64"
    # the remote profiler's own path: compile and link on the host, then fail only at reaching the tracker
    answers = dict(measure_remote([ARCH], space="nb201", batch_size=1, engine=TvmRuntime(1, target=AARCH64),
                                  device=device, protocol=QUICK, workers=1, item_timeout_s=60, connect_timeout_s=2))
    assert f"cannot reach RPC tracker {UNREACHABLE}" in answers[ARCH]["error"]
    [library] = (hwlat_home() / "cache" / "tvm-lib").glob("*.so")
    assert elf_header(library) == (2, 3, 183), "not a 64-bit AArch64 shared library"
