"""`hwlat profile` end to end in real processes: resume after kill -9, bad input, every runtime."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest

QUICK = ["--time-budget", "0.2", "--min-repeats", "10", "--target-ci", "0.05"]


def hwlat(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwlat", *args], capture_output=True, text=True, timeout=timeout)


def stored_rows(db) -> list[tuple]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        try:
            return connection.execute("SELECT id, arch, median_ms, created_at FROM measurements ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


def test_kill_9_mid_run_loses_nothing_and_rerun_resumes(tmp_path):
    db = tmp_path / "m.sqlite"
    command = ["profile", "--sample", "8", "--seed", "3", "--db", str(db), *QUICK]
    parent = subprocess.Popen([sys.executable, "-m", "hwlat", *command], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while len(stored_rows(db)) < 2:
        assert parent.poll() is None, "profiling ended before it could be interrupted"
        assert time.monotonic() < deadline, "no measurement committed within 180 s"
        time.sleep(0.05)
    workers = psutil.Process(parent.pid).children(recursive=True)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    psutil.wait_procs(workers, timeout=30)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE], "worker orphaned"

    before = stored_rows(db)
    assert 2 <= len(before) < 8
    rerun = hwlat(*command, "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] == len(before) and summary["measured"] == 8 - len(before)
    after = stored_rows(db)
    assert len(after) == 8 and len({row[1] for row in after}) == 8
    assert after[: len(before)] == before, "records stored before the kill changed"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sample", "2", "--runtime", "tensorrt"], "unknown runtime 'tensorrt'"),
        (["--arch", "|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|"], "bogus"),
        (["--sample", "0"], "--sample must be a positive"),
        (["--sample", "-3"], "--sample must be a positive"),
        (["--sample", "2", "--threads", "0"], "threads must be >= 1"),
        (["--sample", "2", "--batch", "0"], "batch size must be >= 1"),
        (["--sample", "2", "--space", "nb999"], "nb999"),
        (["--archs", "/nonexistent/archs.txt"], "cannot read architecture file"),
        ([], "choose exactly one of"),
        (["--sample", "2", "--target-ci", "0"], "target_rel_ci"),
        (["--sample", "2", "--item-timeout", "-1"], "timeouts must be positive"),
    ],
)
def test_bad_input_is_one_line_error_and_writes_nothing(tmp_path, args, message):
    db = tmp_path / "m.sqlite"
    result = hwlat("profile", "--db", str(db), *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not db.exists()


def test_unwritable_db_path_is_one_line_error(tmp_path):
    result = hwlat("profile", "--sample", "1", "--db", str(tmp_path / "missing" / "dir" / "m.sqlite"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "missing" in result.stderr


def test_malformed_line_in_arch_file_names_the_entry(tmp_path):
    archs = tmp_path / "archs.txt"
    archs.write_text("# two cells\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|\n|none~0|+|none~0|\n")
    result = hwlat("profile", "--archs", str(archs), "--db", str(tmp_path / "m.sqlite"))
    assert result.returncode != 0 and "entry 2" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("runtime, extra", [("torch", []), ("onnxruntime", ["--threads", "2"]),
                                            ("onnxruntime", ["--optimization", "disable"]), ("tvm", [])])
def test_each_runtime_stores_a_full_record(tmp_path, runtime, extra):
    db = tmp_path / "m.sqlite"
    arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
    result = hwlat("profile", "--arch", arch, "--runtime", runtime, *extra, "--batch", "2", "--db", str(db),
                   "--json", *QUICK)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["measured"] == 1 and summary["platform"].startswith(f"{runtime}/")
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        row = dict(connection.execute("SELECT * FROM measurements").fetchone())
    assert row["batch_size"] == 2 and row["runtime"] == runtime and row["n"] >= 10
    assert 0 < row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
    assert row["ci_low_ms"] <= row["median_ms"] <= row["ci_high_ms"] and row["flops"] > 0
    settings = json.loads(row["settings"])
    assert settings["protocol"]["target_rel_ci"] == 0.05
    if runtime == "tvm":
        assert settings["runtime"]["schedule"].startswith("none") and summary["platform"].endswith("/untuned")


def test_missing_engine_is_one_line_error_naming_the_install(tmp_path):
    shadow = tmp_path / "shadow" / "tvm"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('simulated: apache-tvm not installed')\n")
    db = tmp_path / "m.sqlite"
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    result = subprocess.run([sys.executable, "-m", "hwlat", "profile", "--sample", "1", "--runtime", "tvm",
                             "--db", str(db)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "hwlat[tvm]" in lines[0] and "simulated" in lines[0]
    assert stored_rows(db) == []
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM devices").fetchone() == (0,)


@pytest.mark.parametrize("args, message", [(["--sample", "abc"], "Invalid value for '--sample'"),
                                           (["--sample", "2", "--no-such-option"], "No such option")])
def test_usage_errors_are_one_line_exit_2(tmp_path, args, message):
    result = hwlat("profile", "--db", str(tmp_path / "m.sqlite"), *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_items_past_their_timeout_fail_with_exit_1_and_no_traceback(tmp_path):
    result = hwlat("profile", "--sample", "1", "--item-timeout", "0.01", "--db", str(tmp_path / "m.sqlite"), "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["measured"] == 0 and "no answer within" in summary["failed"][0]["error"]
