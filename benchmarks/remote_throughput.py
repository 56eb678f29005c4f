"""Remote profiling throughput through TVM RPC: 1 vs 2 loopback servers, and record schema vs local runs.

Starts a tracker and 3 plain TVM RPC servers on 127.0.0.1 (key "one": 1 server, key "two": 2 servers), then
profiles the same N sampled NB201 architectures (batch 1, 1 thread, untuned TVM, default protocol) on each
key, first with empty caches ("cold": ONNX export and host compilation included), then again with the compiled
libraries cached ("warm": upload and measurement only). On one machine the servers and the host compiler
share the CPU, so this measures the dispatch overhead and parallel speed-up on this machine, not a board's;
the latencies of runs whose servers share cores are printed relative to the warm 1-server run.
Finally one architecture is profiled locally and its record compared column by column with a remote one.
Usage: python benchmarks/remote_throughput.py [N=20]
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the loopback cluster helper
from rpc_cluster import RpcCluster


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    work = Path(tempfile.mkdtemp(prefix="hwlat-remote-bench-"))
    os.environ["HWLAT_HOME"] = str(work / "home")
    from hwlat.devices import Device, DeviceRegistry
    from hwlat.devices._rpc import target_fingerprint
    from hwlat.profilers import profile
    from hwlat.profilers.runtimes._tvm import _host_mcpu
    from hwlat.spaces import get_space

    archs = get_space("nb201").sample(count, seed=6)
    target = {"kind": "llvm", "mcpu": _host_mcpu(), "num-cores": 1}
    db = work / "bench.sqlite"
    cluster = RpcCluster(work)
    try:
        tracker = cluster.start_tracker()
        for key, servers in (("one", 1), ("two", 2)):
            for _ in range(servers):
                cluster.start_server(key)
            cluster.wait_servers(key, servers)
            DeviceRegistry().add(Device(f"bench-{key}", "rpc", target_fingerprint(target),
                                        {"tracker": tracker, "key": key, "target": target}))
        print(f"{count} NB201 archs, tvm/t1/b1/untuned, target {json.dumps(target)}, tracker {tracker}")
        print(f"{'run':<22}{'servers':>8}{'measured':>10}{'failed':>8}{'wall s':>9}{'archs/min':>11}")
        for cache in ("cold", "warm"):
            for key, servers in (("one", 1), ("two", 2)):
                if cache == "cold":
                    shutil.rmtree(work / "home" / "cache", ignore_errors=True)  # ONNX exports and libraries
                started = time.perf_counter()
                result = profile(archs, runtime="tvm", device=f"bench-{key}", store=db, tag=f"{cache}-{servers}")
                wall = time.perf_counter() - started
                print(f"{cache + ' compile cache':<22}{servers:>8}{result.measured:>10}{len(result.failed):>8}"
                      f"{wall:>9.1f}{60 * result.measured / wall:>11.2f}", flush=True)
                for arch, error in result.failed[:3]:
                    print(f"  failed {arch}: {error}")
        compare_medians(db)
        local = profile(archs[:1], runtime="tvm", device="local", store=db)
        compare_schema(db, local.device_id, archs[0])
    finally:
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)


def compare_medians(db: Path) -> None:
    """Median over archs of each run's latency relative to the warm 1-server run (servers sharing cores inflate it)."""
    import pandas as pd

    with sqlite3.connect(db) as connection:
        frame = pd.read_sql("SELECT arch, tag, median_ms FROM measurements", connection)
    table = frame.pivot(index="arch", columns="tag", values="median_ms")
    ratios = {tag: float((table[tag] / table["warm-1"]).median()) for tag in table.columns if tag != "warm-1"}
    print("median latency relative to the warm 1-server run: "
          + ", ".join(f"{tag} {ratio:.2f}x" for tag, ratio in sorted(ratios.items())))


def compare_schema(db: Path, local_id: str, arch: str) -> None:
    """Print whether a remote and a local record of `arch` have the same columns, types and settings keys."""
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        local = dict(connection.execute("SELECT * FROM measurements WHERE device_id = ? AND arch = ?",
                                        (local_id, arch)).fetchone())
        remote = dict(connection.execute("SELECT * FROM measurements WHERE device_id != ? AND arch = ? "
                                         "AND tag = 'warm-1'", (local_id, arch)).fetchone())
        devices = connection.execute("SELECT id, kind FROM devices ORDER BY kind").fetchall()
    types = {key: (type(local[key]).__name__, type(remote[key]).__name__) for key in local}
    differing = {key: pair for key, pair in types.items() if pair[0] != pair[1]}
    settings = (sorted(json.loads(local["settings"])["runtime"]), sorted(json.loads(remote["settings"])["runtime"]))
    print(f"schema: {len(local)} columns local, {len(remote)} remote, same names: {set(local) == set(remote)}, "
          f"columns with different value types: {differing or 'none'}, "
          f"same runtime settings keys: {settings[0] == settings[1]}")
    print(f"devices table: {[tuple(row) for row in devices]}")
    print(f"{arch}: local median {local['median_ms']:.3f} ms (n={local['n']}), remote (warm, 1 server) "
          f"{remote['median_ms']:.3f} ms (n={remote['n']}), ratio {remote['median_ms'] / local['median_ms']:.2f}")


if __name__ == "__main__":
    main()
