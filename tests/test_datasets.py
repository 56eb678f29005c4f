"""HELP loaders on the shared files and on crafted folders; the unpickling allow-list; the table round trip."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import require_shared
from hwlat._errors import HwlatError
from hwlat.datasets import LatencyDataset, load_dataset, load_help, safe_load
from hwlat.spaces import get_space


class _Foreign:
    """A class outside every allow-list; unpickling it must be refused."""

    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-hwlat-test",))


@pytest.fixture(scope="module")
def help_root():
    return require_shared("data/help")


@pytest.mark.parametrize(("space", "count", "first"), [
    ("nb201", 15625, "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"),
    ("fbnet", 5000, "k5_e6-skip-k3_e1_g2-skip-k5_e1-skip-skip-skip-k5_e6-k5_e1-k3_e1_g2-k5_e1-k5_e6-k3_e6-k3_e3-"
                    "k5_e6-k3_e6-k3_e3-k5_e1-k3_e3-k5_e1-k5_e1_g2"),
    ("ofa", 5000, "ks=7,5,0,0,7,7,0,0,5,7,0,0,5,3,0,0,5,3,5,0;e=6,4,0,0,6,3,0,0,3,6,0,0,3,6,0,0,6,4,3,0;"
                  "d=2,2,2,2,3;r=204"),
])
def test_shared_help_files_load(help_root, space, count, first):
    data = load_help(help_root, space)
    assert len(data.archs) == count and len(set(data.archs)) == count
    assert data.archs[0] == first
    assert len(data.references) == 10
    raw = torch.load(next((help_root / {"nb201": "nasbench201"}.get(space, space) / "latency").glob("*.pt")),
                     weights_only=True)
    assert any(np.array_equal(data[d], np.asarray(raw, dtype=float)) for d in data.devices)


def test_nb201_order_is_the_official_index(help_root):
    data = load_help(help_root, "nb201")
    space = get_space("nb201")
    assert all(space.index(data.archs[i]) == i for i in (0, 1, 9, 431, 15624))


def test_space_folder_and_new_device_file(help_root, tmp_path):
    folder = tmp_path / "mine"
    (folder / "latency").mkdir(parents=True)
    shutil.copy(help_root / "fbnet" / "metainfo.pt", folder)
    torch.save(list(np.linspace(1, 2, 5000)), folder / "latency" / "My Board (v2).pt")
    data = load_help(folder, "fbnet")  # the space folder itself, a device nobody knew, no reference index
    assert data.devices == ("My Board (v2)",) and data.references == ()
    assert data["My Board (v2)"][-1] == 2.0


def test_wrong_length_and_missing_folder_are_errors(tmp_path):
    (tmp_path / "nasbench201" / "latency").mkdir(parents=True)
    torch.save([1.0, 2.0], tmp_path / "nasbench201" / "latency" / "x.pt")
    with pytest.raises(HwlatError, match="2 latencies, expected one per architecture"):
        load_help(tmp_path, "nb201")
    with pytest.raises(HwlatError, match="no HELP fbnet data"):
        load_help(tmp_path, "fbnet")


def test_crafted_pickle_with_foreign_global_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save([1.0, _Foreign()], path)
    with pytest.raises(HwlatError, match=r"evil.pt: refused to unpickle .*rmtree"):
        safe_load(path)


def test_plain_pickle_file_is_refused_too(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(pickle.dumps(_Foreign(), protocol=2))
    with pytest.raises(HwlatError, match="x.pt"):
        safe_load(path)


def test_ofa_archs_need_the_numpy_allow_list(help_root):
    path = help_root / "ofa" / "ofa_archs.pt"
    with pytest.raises(HwlatError, match="refused to unpickle"):
        safe_load(path)  # numpy scalars are not allowed by default


def test_frame_round_trip_and_project_table(tmp_path):
    space = get_space("nb201")
    archs = tuple(space.arch(i) for i in range(4))
    data = LatencyDataset("nb201", archs, {"a": np.array([1.0, 2.0, np.nan, 4.0])})
    frame = data.to_frame()
    assert len(frame) == 3 and set(frame.columns) >= {"space", "arch", "device_id", "platform", "tag", "median_ms"}
    back = LatencyDataset.from_frame(frame, "nb201")
    assert back.devices == ("a:help",) and back["a:help"].tolist() == [1.0, 2.0, 4.0]
    rows = pd.DataFrame({"space": "nb201", "arch": [archs[0], archs[0], archs[1], archs[1]], "device_id": "box",
                         "platform": ["torch/t1/b1"] * 3 + ["onnxruntime/t1/b1"], "tag": ["", "retest", "", ""],
                         "median_ms": [1.0, 9.0, 3.0, 5.0]})
    rows.to_csv(tmp_path / "m.csv", index=False)
    table = load_dataset(tmp_path / "m.csv", "nb201")
    assert table.devices == ("box:onnxruntime/t1/b1", "box:torch/t1/b1")
    assert table["box:torch/t1/b1"].tolist() == [1.0, 3.0]  # the retest row is not mixed in
    assert np.isnan(table["box:onnxruntime/t1/b1"][0])


def test_merge_aligns_archs_and_keeps_references():
    space = get_space("nb201")
    archs = tuple(space.arch(i) for i in range(5))
    left = LatencyDataset("nb201", archs[:3], {"a": np.array([1.0, 2, 3])}, references=(2,))
    right = LatencyDataset("nb201", (archs[4], archs[1]), {"b": np.array([5.0, 6])})
    merged = left.merge(right)
    assert merged.archs == (*archs[:3], archs[4]) and merged.references == (2,)
    assert np.array_equal(merged["b"], [np.nan, 6, np.nan, 5], equal_nan=True)
    assert np.array_equal(merged["a"], [1, 2, 3, np.nan], equal_nan=True)
    with pytest.raises(HwlatError, match="both datasets have device"):
        left.merge(left)
