"""Measurement store: commit on add, duplicate keys, filters, exports, errors, durability under kill -9."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from hwlat._errors import HwlatError
from hwlat.devices import Device
from hwlat.store import MEASUREMENT_KEY, RECORD_FIELDS, MeasurementStore

DEVICE = Device(name="box", kind="local", fingerprint={"cpu_model": "Test CPU", "logical_cores": 2})


def record(arch: str = "a", **overrides) -> dict:
    stats = {"median_ms": 1.0, "mean_ms": 1.1, "std_ms": 0.1, "p10_ms": 0.9, "p90_ms": 1.3, "min_ms": 0.8,
             "max_ms": 2.0, "ci_low_ms": 0.95, "ci_high_ms": 1.05, "ci_rel": 0.05, "cv": 0.09, "n": 20,
             "n_outliers": 1, "number": 4, "warmup": 10, "converged": True, "wall_s": 0.5}
    return {"space": "nb201", "arch": arch, "device_id": DEVICE.id, "platform": "onnxruntime/t1/b1",
            "runtime": "onnxruntime", "runtime_version": "1.20", "batch_size": 1, "threads": 1,
            "settings": {"optimization": "all"}, "flops": 1000, "params": 10, **stats, **overrides}


@pytest.fixture
def store(tmp_path):
    with MeasurementStore(tmp_path / "m.sqlite") as opened:
        opened.add_device(DEVICE)
        yield opened


def test_record_fields_cover_the_table_and_key():
    assert MEASUREMENT_KEY == ("space", "arch", "device_id", "platform", "tag")
    assert set(MEASUREMENT_KEY) <= set(RECORD_FIELDS) and "id" not in RECORD_FIELDS


def test_added_record_is_visible_to_a_second_store_immediately(store, tmp_path):
    assert store.add(record("a"))
    with MeasurementStore(str(tmp_path / "m.sqlite")) as reader:
        row = reader.frame().iloc[0]
    assert row["arch"] == "a" and row["tag"] == "" and row["hwlat_version"]
    assert json.loads(row["settings"]) == {"optimization": "all"} and bool(row["converged"])
    assert row["created_at"].tzinfo is not None


def test_duplicate_key_returns_false_and_tag_allows_a_remeasurement(store):
    assert store.add(record("a"))
    assert not store.add(record("a", median_ms=5.0))
    assert store.add(record("a", tag="retest", median_ms=5.0))
    assert list(store.frame(arch="a")["median_ms"]) == [1.0, 5.0]


def test_completed_is_per_key(store):
    store.add(record("a"))
    store.add(record("b"))
    store.add(record("c", platform="torch/t1/b1"))
    store.add(record("d", tag="retest"))
    key = {"space": "nb201", "device_id": DEVICE.id, "platform": "onnxruntime/t1/b1"}
    assert store.completed(**key) == {"a", "b"}
    assert store.completed(**key, tag="retest") == {"d"}
    assert store.completed(**{**key, "device_id": "other"}) == set()


def test_frame_filters(store):
    store.add(record("a"))
    store.add(record("b", platform="torch/t1/b1"))
    assert list(store.frame(platform="torch/t1/b1")["arch"]) == ["b"]
    assert len(store.frame()) == 2 and store.frame(space="other").empty
    with pytest.raises(HwlatError, match="unknown measurement column.*colour"):
        store.frame(colour="red")


@pytest.mark.parametrize("change, message", [({"median_ms": None}, "missing field.*median_ms"),
                                             ({"colour": "red"}, "unknown field.*colour"),
                                             ({"n": "many"}, "n='many' is not a int")])
def test_invalid_record_is_rejected_and_nothing_stored(store, change, message):
    with pytest.raises(HwlatError, match=message):
        store.add(record("a", **change))
    assert store.frame().empty


def test_add_device_upserts(store):
    renamed = Device(name="renamed", kind="local", fingerprint={**DEVICE.fingerprint})
    store.add_device(renamed)
    devices = store.devices_frame()
    assert list(devices["name"]) == ["renamed"] and json.loads(devices["fingerprint"][0]) == DEVICE.fingerprint
    assert devices["last_seen"][0] >= devices["first_seen"][0]


def test_summary(store):
    store.add(record("a", median_ms=1.0, cv=0.1))
    store.add(record("b", median_ms=3.0, cv=0.3))
    store.add(record("c", tag="retest"))
    summary = store.summary()
    assert list(summary.columns) == ["space", "device_id", "platform", "tag", "count", "median_ms", "cv"]
    untagged = summary[summary["tag"] == ""].iloc[0]
    assert untagged["count"] == 2 and untagged["median_ms"] == 2.0 and untagged["cv"] == pytest.approx(0.2)


@pytest.mark.parametrize("name, reader", [("out.csv", pd.read_csv), ("out.parquet", pd.read_parquet)])
def test_export_round_trip(store, tmp_path, name, reader):
    store.add(record("a", params=None))
    store.add(record("b", platform="torch/t1/b1"))
    path = tmp_path / name
    assert store.export(path, platform="onnxruntime/t1/b1") == 1
    frame = reader(path)
    assert list(frame["arch"]) == ["a"] and frame["median_ms"][0] == 1.0
    assert json.loads(frame["settings"][0]) == {"optimization": "all"}
    assert list(frame.columns) == ["id", *RECORD_FIELDS]
    devices = json.loads((tmp_path / "out.devices.json").read_text())
    assert [d["id"] for d in devices] == [DEVICE.id] and devices[0]["fingerprint"] == DEVICE.fingerprint
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == sorted([name, "out.devices.json"])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, "export kept mkstemp's private mode"


def test_export_format_option_overrides_suffix(store, tmp_path):
    store.add(record("a"))
    assert store.export(tmp_path / "data.bin", format="parquet") == 1
    assert len(pd.read_parquet(tmp_path / "data.bin")) == 1


def test_export_errors_leave_no_file(store, tmp_path):
    store.add(record("a"))
    with pytest.raises(HwlatError, match="unknown format 'xlsx'"):
        store.export(tmp_path / "out.xlsx")
    with pytest.raises(HwlatError, match="cannot write"):
        store.export(tmp_path / "missing" / "out.csv")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HwlatError, match="cannot write"):
        store.export(blocker / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "m.sqlite", "m.sqlite-shm", "m.sqlite-wal"]


@pytest.mark.parametrize("where, message", [("missing/dir/m.sqlite", "does not exist"), ("", "is a directory"),
                                            ("file/m.sqlite", "does not exist")])
def test_unopenable_database_is_an_error_naming_the_url(tmp_path, where, message):
    (tmp_path / "file").write_text("")
    with pytest.raises(HwlatError, match=message) as error:
        MeasurementStore(tmp_path / where)
    assert str(tmp_path) in str(error.value)


@pytest.mark.parametrize("url, message", [("nosuchdb://host/x", "unknown database type 'nosuchdb'"),
                                          ("postgresql+nosuchdriver://u:secret@h/db", "cannot open database")])
def test_bad_url_is_an_error_without_password(url, message):
    with pytest.raises(HwlatError, match=message) as error:
        MeasurementStore(url)
    assert "secret" not in str(error.value)


def test_default_location_is_env_or_cwd(tmp_path, monkeypatch):
    with MeasurementStore() as store:
        assert store.url.endswith("/hwlat.sqlite")
    monkeypatch.setenv("HWLAT_DB", str(tmp_path / "env.sqlite"))
    with MeasurementStore() as store:
        assert store.url == f"sqlite:///{tmp_path / 'env.sqlite'}"
    with pytest.raises(HwlatError, match="does not exist"):
        MeasurementStore(tmp_path / "absent.sqlite", create=False)


def test_record_committed_before_kill_9_survives(tmp_path):
    db = tmp_path / "m.sqlite"
    script = textwrap.dedent(f"""
        import time
        from hwlat.store import MeasurementStore
        MeasurementStore({str(db)!r}).add({record("survivor")!r})
        print("committed", flush=True)
        time.sleep(60)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "committed"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    with MeasurementStore(db) as store:
        assert list(store.frame()["arch"]) == ["survivor"]
