"""Interference models: features from co-runner windows, baselines, the dual-branch transformer, grouped CV,
save/load, latency under co-location as a search metric, and the train/evaluate/predict commands."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from conftest import PROJECT_ROOT

from hwlat._errors import HwlatError
from hwlat.interference import (EXTRAS, SPLITS, ColocatedLatency, CrossValidation, FeatureSpec, InterferenceData,
                                InterferenceModel, TransformerInterference, WorkloadSignature, cross_validate,
                                evaluate_on, mae_percent, make_model, model_kinds, tune)
from hwlat.interference._features import TARGETS, TIME_SLICE_MS
from hwlat.profilers._pressure import PRESSURE_COLUMNS

#: the shipped co-location dataset (recorded on the project machine)
DATA = PROJECT_ROOT / "data" / "interference-cpu"
PINNED_C = PROJECT_ROOT / "data" / "interference-cpu-pinned-c"  # with pressure.csv
TINY = {"members": 1, "max_epochs": 15, "patience": 5, "d_model": 16, "steps": 16}


def schema_frames(workloads: int = 6, targets: int = 4, cores: int = 2, counters: bool = True,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small synthetic dataset in the schema's layout (test fixture, not data): the slowdown grows with the
    co-runners' CPU utilisation, times the target's threads."""
    rng = np.random.default_rng(seed)
    scenarios, metrics = [], []
    for w in range(workloads):
        busy = rng.uniform(0, 1, cores)
        for t in range(targets):
            sid, threads, isolated = f"s{w}.{t}", 1 + t % 2, 1.0 + t
            slowdown = 1 + 0.5 * busy.mean() * threads
            scenarios.append({
                "scenario_id": sid, "workload": f"cpu-x{w}", "workload_family": "cpu", "target": f"nb201:a{t}",
                "target_runtime": ("onnxruntime", "torch")[t % 2], "target_threads": threads,
                "target_flops": 1e7 * (t + 1), "target_params": 1e5 * (t + 1),
                "corunners": json.dumps([{"kind": "cpu", "name": "cpu", "runtime": None, "threads": 1,
                                          "intensity": 1.0, "start_s": 0.0}] * (1 + w % 2)),
                "n_corunner_procs": 1 + w % 2, "interval_s": 0.1, "isolated_median_ms": isolated,
                "isolated_p90_ms": 1.05 * isolated, "isolated_p99_ms": 1.1 * isolated,
                "isolated_after_median_ms": isolated, "colocated_median_ms": isolated * slowdown,
                "colocated_p90_ms": 1.1 * isolated * slowdown, "colocated_p99_ms": 1.3 * isolated * slowdown,
                "colocated_n": 100, "slowdown": slowdown, "slowdown_p90": 1.1 * slowdown,
                "slowdown_p99": 1.3 * slowdown, "slowdown_mean": 1.05 * slowdown,
                "disturbed": int(w == 0 and t == 0), "device_id": "test",
                "created_at": "2026-01-01", "hwlat_version": "0"})
            for phase in ("isolated_before", "corunners", "colocated", "isolated_after"):
                steps = int(rng.integers(15, 25))
                util = np.clip(busy + rng.normal(0, 0.05, (steps, cores)), 0, 1)
                frame = pd.DataFrame({"scenario_id": sid, "phase": phase, "step": np.arange(steps),
                                      "t_s": 0.1 * np.arange(steps), "cpu_util_mean": util.mean(axis=1),
                                      "cpu_util_max": util.max(axis=1),
                                      **{f"cpu{i}_util": util[:, i] for i in range(cores)},
                                      "ctx_switches_per_s": rng.uniform(100, 1000, steps), "load1": busy.sum(),
                                      "target_latency_ms": np.nan, "target_inferences": 0})
                if counters:
                    frame["llc_misses_per_s"] = rng.uniform(0, 1e6, steps)
                metrics.append(frame)
    return pd.DataFrame(scenarios), pd.concat(metrics, ignore_index=True)


@pytest.fixture(scope="module")
def synthetic() -> InterferenceData:
    return InterferenceData.from_frames(*schema_frames())


@pytest.fixture(scope="module")
def recorded() -> InterferenceData:
    """The shipped dataset (disturbed scenarios excluded)."""
    assert (DATA / "scenarios.csv").exists(), f"{DATA} is missing"
    return InterferenceData.load(DATA)


def test_mae_percent_is_relative_to_the_measured_slowdown():
    assert mae_percent([1.1, 1.8], [1.0, 2.0]) == pytest.approx(10.0)


def test_per_core_columns_become_aggregates_for_any_core_count(synthetic):
    four = InterferenceData.from_frames(*schema_frames(cores=4, seed=1))
    for data, cores in ((synthetic, 2), (four, 4)):
        assert not any(name.startswith("cpu0") for name in data.metric_names)
        assert "cpu_free_cores" in data.metric_names and set(data.scenarios["n_cores"]) == {cores}
        window = data.windows[0][:, data.metric_names.index("cpu_free_cores")]
        assert np.all((window >= 0) & (window <= cores))
    # a model trained on the 2-core machine predicts for the 4-core one (same feature layout)
    model = make_model("linear").fit(synthetic)
    assert np.isfinite(model.predict(four).to_numpy()).all()


def test_disturbed_scenarios_are_excluded_unless_asked(synthetic):
    scenarios, metrics = schema_frames()
    assert len(synthetic) == len(scenarios) - 1
    assert len(InterferenceData.from_frames(scenarios, metrics, include_disturbed=True)) == len(scenarios)


def test_missing_counters_and_columns(synthetic):
    without = InterferenceData.from_frames(*schema_frames(counters=False, seed=2))
    assert "llc_misses_per_s" not in without.metric_names
    nan_counter = schema_frames(seed=3)
    nan_counter[1]["llc_misses_per_s"] = np.nan
    spec = FeatureSpec.fit(InterferenceData.from_frames(*nan_counter))
    assert "llc_misses_per_s" not in spec.metrics  # no value in training: dropped
    for kind in ("linear", "gb", "transformer"):  # trained with the counter, predicting without it
        model = make_model(kind, **(TINY if kind == "transformer" else {})).fit(synthetic)
        assert np.isfinite(model.predict(without).to_numpy()).all()
    scenarios, metrics = schema_frames()
    with pytest.raises(HwlatError, match="isolated_median_ms"):
        InterferenceData.from_frames(scenarios.drop(columns="isolated_median_ms"), metrics)
    with pytest.raises(HwlatError, match="no 'corunners' metrics for 1 scenario"):
        InterferenceData.from_frames(scenarios, metrics[~((metrics["scenario_id"] == "s1.1")
                                                          & (metrics["phase"] == "corunners"))])
    with pytest.raises(HwlatError, match="lack measured slowdown_mean .*inferences.parquet"):
        make_model("gb").fit(InterferenceData.from_frames(scenarios.drop(columns="slowdown_mean"), metrics))


def test_normalisation_comes_from_the_training_scenarios_only(synthetic):
    train = synthetic.subset(np.flatnonzero(synthetic.scenarios["workload"] != "cpu-x3"))
    spec = FeatureSpec.fit(train)
    column = train.metric_names.index("cpu_util_mean")
    assert spec.metric_mean[spec.metrics.index("cpu_util_mean")] == pytest.approx(
        np.vstack(train.windows)[:, column].mean())
    assert spec.metric_mean[0] != pytest.approx(FeatureSpec.fit(synthetic).metric_mean[0])


@pytest.mark.parametrize("kind", ["none", "slice", "linear", "gb", "transformer"])
def test_save_load_round_trip(kind, synthetic, tmp_path):
    model = make_model(kind, **(TINY if kind == "transformer" else {})).fit(synthetic)
    loaded = InterferenceModel.load(model.save(tmp_path / f"{kind}.npz"))
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    np.testing.assert_allclose(loaded.predict(synthetic).to_numpy(), model.predict(synthetic).to_numpy(),
                               rtol=1e-6)
    with np.load(tmp_path / f"{kind}.npz", allow_pickle=False) as stored:
        assert json.loads(str(stored["header"]))["kind"] == kind


def test_bad_model_files_are_one_line_errors(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(HwlatError, match="not a saved hwlat interference model"):
        InterferenceModel.load(tmp_path / "empty.npz")
    np.savez(tmp_path / "other.npz", header=np.asarray(json.dumps({"format": "hwlat-predictor", "version": 1})))
    with pytest.raises(HwlatError, match="unsupported interference model file"):
        InterferenceModel.load(tmp_path / "other.npz")
    with pytest.raises(HwlatError, match="unknown interference model 'forest'"):
        make_model("forest")
    with pytest.raises(HwlatError, match="must be fitted"):
        make_model("gb").predict(InterferenceData.from_frames(*schema_frames()))
    assert set(model_kinds()) >= {"none", "linear", "gb", "transformer"}


def test_transformer_is_deterministic_and_orders_its_quantiles(synthetic):
    first = TransformerInterference(**TINY, seed=3).fit(synthetic).predict(synthetic).to_numpy()
    again = TransformerInterference(**TINY, seed=3).fit(synthetic).predict(synthetic).to_numpy()
    other = TransformerInterference(**TINY, seed=4).fit(synthetic).predict(synthetic).to_numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert np.all(first[:, 1] >= first[:, 0]) and np.all(first[:, 2] >= first[:, 1])


def test_grouped_cv_never_trains_on_a_held_out_workload(synthetic):
    seen = []

    class Recording(type(make_model("linear"))):  # no `kind` of its own: not registered
        def _fit(self, data, log_targets):
            seen.append(set(data.scenarios["workload"]))
            super()._fit(data, log_targets)

    result = cross_validate(Recording(), synthetic, "workload", folds=3)
    assert len(result.folds) == 3 and len(result.predictions) == len(synthetic)
    for fold, trained in enumerate(seen):
        held_out = set(result.predictions.loc[result.predictions["fold"] == fold, "workload"])
        assert held_out and not held_out & trained
    assert result.mae() == pytest.approx(result.folds["mae_slowdown"].mean())
    assert result.summary()["fold_mae_slowdown"] == result.folds["mae_slowdown"].round(4).tolist()
    with pytest.raises(HwlatError, match="unknown split"):
        cross_validate(Recording(), synthetic, "device")


def test_a_model_fitted_on_one_recording_is_scored_on_another(synthetic):
    other = InterferenceData.from_frames(*schema_frames(workloads=3, seed=1))
    fitted_on = []

    class Recording(type(make_model("gb"))):
        def _fit(self, data, log_targets):
            fitted_on.append(len(data))
            super()._fit(data, log_targets)

    result = evaluate_on(Recording(random_state=0), synthetic, other)
    assert fitted_on == [len(synthetic)] and result.split == "dataset"
    assert list(result.predictions["scenario_id"]) == list(other.scenarios["scenario_id"])
    expected = make_model("gb", random_state=0).fit(synthetic).predict(other)["slowdown"].to_numpy()
    assert result.predictions["pred_slowdown"].to_numpy() == pytest.approx(expected)
    assert result.mae() == pytest.approx(mae_percent(expected, other.scenarios["slowdown"]))
    assert result.mae() < 0.5 * evaluate_on(make_model("none"), synthetic, other).mae()


def test_another_recording_joins_every_training_fold_less_the_held_out_groups(synthetic):
    scenarios, metrics = schema_frames(workloads=4, seed=1)  # workloads cpu-x0..3 also in `synthetic`
    scenarios["scenario_id"], metrics["scenario_id"] = "b" + scenarios["scenario_id"], "b" + metrics["scenario_id"]
    scenarios["target"] = scenarios["target"].str.replace("nb201:a", "nb201:b")  # cells `synthetic` lacks
    other = InterferenceData.from_frames(scenarios, metrics)
    fitted = []

    class Recording(type(make_model("gb"))):
        def _fit(self, data, log_targets):
            fitted.append(data.scenarios[["scenario_id", "workload", "target"]].copy())
            super()._fit(data, log_targets)

    for split, column in SPLITS.items():
        fitted.clear()
        result = cross_validate(Recording(random_state=0), synthetic, split, 3, extra_train=other)
        assert len(fitted) == 3 and list(result.folds["train_scenarios"]) == [len(t) for t in fitted]
        assert sorted(result.predictions["scenario_id"]) == sorted(synthetic.scenarios["scenario_id"])
        for train, (_, fold) in zip(fitted, result.predictions.groupby("fold")):
            held_out = set(fold[column])
            extra = train["scenario_id"].str.startswith("b")
            assert not held_out & set(train[column])
            assert set(train.loc[~extra, "scenario_id"]) == set(synthetic.scenarios["scenario_id"]) - set(
                fold["scenario_id"])
            assert set(train.loc[extra, "scenario_id"]) == set(
                other.scenarios.loc[~other.scenarios[column].isin(held_out), "scenario_id"])
        joined = sum(train["scenario_id"].str.startswith("b").sum() for train in fitted)
        assert joined == (3 * len(other) if split == "target" else 2 * len(other))  # a workload is held out once
    # a recording without a metric (perf counters recorded on one machine only): missing in its windows
    lacking = InterferenceData(other.scenarios, other.metric_names[:-1], tuple(w[:, :-1] for w in other.windows))
    joined = synthetic.concat(lacking)
    assert joined.metric_names == synthetic.metric_names and len(joined) == len(synthetic) + len(other)
    assert all(np.isnan(w[:, -1]).all() for w in joined.windows[len(synthetic):])
    np.testing.assert_array_equal(joined.windows[0], synthetic.windows[0])
    assert lacking.concat(synthetic).metric_names == synthetic.metric_names


def test_transformer_learns_the_interference_signal(synthetic):
    data = InterferenceData.from_frames(*schema_frames(workloads=8))
    none = cross_validate(make_model("none"), data, "workload", 3).mae()
    learned = cross_validate(TransformerInterference(**TINY), data, "workload", 3).mae()
    assert learned < 0.5 * none  # on workloads it never saw
    with pytest.raises(HwlatError, match="branches must be one of"):
        TransformerInterference(**{**TINY, "branches": "spatial"}).fit(synthetic)


def test_load_and_oversubscription_descriptors(synthetic, tmp_path):
    base, extended = FeatureSpec.fit(synthetic), FeatureSpec.fit(synthetic, ("load", "threads"))
    added = extended.descriptor_names[len(base.descriptor_names) - len(base.runtimes) - len(base.kinds):]
    assert added[:5] == (*EXTRAS["load"], *EXTRAS["threads"])
    raw = extended._raw_descriptors(synthetic)
    column = synthetic.metric_names.index("cpu_util_mean")
    busy = np.array([w[:, column].mean() * 2 for w in synthetic.windows])  # 2 cores in the synthetic data
    threads = synthetic.scenarios["target_threads"].to_numpy(float)
    np.testing.assert_allclose(raw[:, extended.descriptor_names.index("busy_cores")], busy)
    np.testing.assert_allclose(raw[:, extended.descriptor_names.index("busy_excess_cores")],
                               np.maximum(0, threads + busy - 2))
    corunners = synthetic.scenarios["n_corunner_procs"].to_numpy(float)  # one thread each
    np.testing.assert_array_equal(raw[:, extended.descriptor_names.index("multithread_oversubscribed")],
                                  (threads > 1) & (threads + corunners > 2))
    with pytest.raises(HwlatError, match="unknown descriptor group"):
        FeatureSpec.fit(synthetic, ("gpu",))
    model = make_model("linear", extras=("load",)).fit(synthetic)  # the groups travel with a saved model
    loaded = InterferenceModel.load(model.save(tmp_path / "linear.npz"))
    assert loaded.spec_.extras == ("load",) and loaded.spec_.descriptor_names == model.spec_.descriptor_names



def test_placement_descriptors_follow_the_pinned_cores(tmp_path):
    scenarios, metrics = schema_frames(workloads=2, targets=2)  # targets with 1 and 2 threads, 2 cores
    mix = [{"kind": "cpu", "threads": 1, "intensity": 1.0}, {"kind": "membw", "threads": 1, "intensity": 0.5}]
    scenarios = scenarios.assign(corunners=json.dumps(mix), disturbed=0,
                                 placement=["pinned", "pinned", "free", "free"])
    data = InterferenceData.from_frames(scenarios, metrics)
    table = data.placement().assign(threads=data.scenarios["target_threads"], placement=data.scenarios["placement"])
    # pinned, 1-thread target on core 0: the cpu co-runner gets core 1, the membw one wraps round to core 0
    one = table[(table["placement"] == "pinned") & (table["threads"] == 1)].iloc[0]
    assert one["shared_threads"] == 1 and one["shared_load_membw"] == 0.5 and one["shared_load_cpu"] == 0
    assert one["other_load_cpu"] == 1 and one["other_load_membw"] == 0
    assert one["target_time_share"] == pytest.approx(1 / 1.5)
    # pinned 2-thread target: both co-runners share its cores; free: half of everything lands on a 1-thread target
    two = table[(table["placement"] == "pinned") & (table["threads"] == 2)].iloc[0]
    assert two["shared_threads"] == 2 and two["other_load_cpu"] == 0 and two["target_time_share"] == pytest.approx(
        (1 / 2 + 1 / 1.5) / 2)
    free = table[(table["placement"] == "free") & (table["threads"] == 1)].iloc[0]
    assert free["shared_threads"] == 1 and free["shared_load_cpu"] == free["other_load_cpu"] == 0.5
    assert not set(EXTRAS["placement"]) & set(FeatureSpec.fit(data, ("load", "threads")).descriptor_names)
    model = make_model("linear", extras=("placement",)).fit(data)
    loaded = InterferenceModel.load(model.save(tmp_path / "linear.npz"))
    assert set(EXTRAS["placement"]) <= set(loaded.spec_.descriptor_names)
    np.testing.assert_allclose(loaded.predict(data).to_numpy(), model.predict(data).to_numpy())


def slice_frames(isolated_ms: list[float], corunners: int, placement: str = "pinned",
                 switches_per_s: float = 100.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1-thread targets taking `isolated_ms` alone beside `corunners` CPU stressors on a busy 2-core machine, whose
    window shows `switches_per_s` context switches (100/s: whole time slices of 20 ms; 1e5/s: 0.02 ms bursts)."""
    scenarios, metrics = schema_frames(workloads=1, targets=len(isolated_ms))
    mix = [{"kind": "cpu", "threads": 1, "intensity": 1.0}] * corunners
    scenarios = scenarios.assign(isolated_median_ms=isolated_ms, target_threads=1, disturbed=0,
                                 corunners=json.dumps(mix), placement=placement)
    return scenarios, metrics.assign(cpu_util_mean=1.0, ctx_switches_per_s=switches_per_s)


def test_time_slice_descriptors_follow_the_preemption_mixture(tmp_path):
    data = InterferenceData.from_frames(*slice_frames([1.0, 6.0], corunners=2))
    table = data.time_slice(4.0)
    assert tuple(table.columns) == EXTRAS["slice"]
    # pinned: the second stressor shares the target's core; 1 ms = a quarter slice, so a quarter of the inferences
    # wait a 4 ms slice: median 1, p90 and p99 5
    short, long = table.iloc[0], table.iloc[1]
    assert (short["slice_ratio"], short["slice_fraction"], short["slice_competitors"]) == (0.25, 0.25, 1.0)
    assert short["slice_wait_ratio"] == 4.0
    np.testing.assert_allclose(short[["slice_log_slowdown", "slice_log_slowdown_p90", "slice_log_slowdown_p99"]],
                               [0.0, np.log(5), np.log(5)])
    # 6 ms = 1.5 slices: half the inferences are preempted once, half twice; the median takes the second wait
    np.testing.assert_allclose(long[["slice_log_slowdown", "slice_log_slowdown_p99"]], np.log(1 + 2 * 4 / 6))
    # one stressor goes to the other core; free placement spreads two over both cores (one per core)
    alone = InterferenceData.from_frames(*slice_frames([1.0, 6.0], corunners=1)).time_slice(4.0)
    assert (alone["slice_competitors"] == 0).all() and (alone.filter(like="slice_log").to_numpy() == 0).all()
    free = InterferenceData.from_frames(*slice_frames([1.0, 6.0], corunners=2, placement="free")).time_slice(4.0)
    assert (free["slice_competitors"] == 1).all()
    # co-runners that sleep after microseconds of work barely take the target's slices
    brief = InterferenceData.from_frames(*slice_frames([1.0, 6.0], corunners=2, switches_per_s=1e5)).time_slice(4.0)
    assert (brief["slice_competitors"] < 0.01).all()
    # the group travels with a saved model
    model = make_model("gb", n_estimators=10, extras=("slice",)).fit(data)
    loaded = InterferenceModel.load(model.save(tmp_path / "gb.npz"))
    assert set(EXTRAS["slice"]) <= set(loaded.spec_.descriptor_names)
    np.testing.assert_allclose(loaded.predict(data).to_numpy(), model.predict(data).to_numpy())


def test_time_slice_descriptors_use_each_scenarios_measured_slice():
    # a 1 ms inference beside a CPU stressor on its core: a whole slice of a 1 ms kernel slice (every inference is
    # preempted once, the median waits 1 ms), a quarter of the default 4 ms slice (the median runs untouched)
    scenarios, metrics = slice_frames([1.0, 1.0], corunners=2)
    data = InterferenceData.from_frames(scenarios.assign(time_slice_ms=[1.0, np.nan]), metrics)
    np.testing.assert_allclose(data.slice_ms(), [1.0, TIME_SLICE_MS])
    table = data.time_slice()
    np.testing.assert_allclose(table["slice_ratio"], [1.0, 1.0 / TIME_SLICE_MS])
    np.testing.assert_allclose(table["slice_log_slowdown"], [np.log(2.0), 0.0])
    # the mean has no knife edge: one competitor slice per slice of its own, whatever the slice (1 + competitors)
    np.testing.assert_allclose(data.slice_log_slowdowns()[:, TARGETS.index("slowdown_mean")], np.log(2.0))
    assert (data.time_slice(4.0)["slice_ratio"] == 0.25).all()  # an explicit slice overrides the recorded ones
    # a search scenario built from a recorded workload takes the slice of the machine it was recorded on
    from hwlat.spaces import get_space

    one = InterferenceData.from_frames(scenarios.assign(time_slice_ms=1.0), metrics)
    signature = WorkloadSignature.from_data(one, str(scenarios["workload"].iloc[0]))
    assert signature.time_slice_ms == 1.0
    arch = get_space("nb201").sample(1, seed=0)[0]
    latency = ColocatedLatency(make_model("slice").fit(one), {arch: 1.0}, signature, "nb201", quantile="median")
    assert latency.describe()["time_slice_ms"] == 1.0 and float(latency([arch])[0]) == pytest.approx(2.0)
    # beside a workload recorded where the slice is 4 ms the median runs untouched, the mean still doubles
    four = InterferenceData.from_frames(scenarios.assign(time_slice_ms=4.0), metrics)
    beside = WorkloadSignature.from_data(four, str(scenarios["workload"].iloc[0]))
    for statistic, expected in (("median", 1.0), ("mean", 2.0)):
        metric = ColocatedLatency(make_model("slice").fit(four), {arch: 1.0}, beside, "nb201", quantile=statistic)
        assert float(metric([arch])[0]) == pytest.approx(expected), statistic


def preempted_and_memory_bound() -> tuple[InterferenceData, np.ndarray, np.ndarray]:
    """Targets preempted as the time-slice mixture says (median jumps at half a slice; tails for all), slowed 1.2x
    more beside a memory-bound co-runner (`kind`): the data, the mixture's slowdowns, and which rows are memory-bound."""
    isolated = list(np.geomspace(0.3, 12.0, 24))
    scenarios, metrics = slice_frames(isolated, corunners=2)
    memory = np.arange(len(isolated)) % 2 == 1
    scenarios["corunners"] = [json.dumps([{"kind": "membw" if m else "cpu", "threads": 1, "intensity": 1.0}] * 2)
                              for m in memory]
    mixture = np.exp(InterferenceData.from_frames(scenarios, metrics).slice_log_slowdowns())
    truth = mixture * np.where(memory, 1.2, 1.0)[:, None]
    scenarios = scenarios.assign(**dict(zip(TARGETS, truth.T)))
    return InterferenceData.from_frames(scenarios, metrics), mixture, memory


def test_time_slice_mixture_as_a_model_and_as_the_base_of_boosting(tmp_path):
    # leave-target-out, the descriptors help boosting, the mixture alone misses only the memory factor, and boosting
    # the correction to the mixture learns that factor
    data, mixture, _ = preempted_and_memory_bound()
    np.testing.assert_allclose(make_model("slice").fit(data).predict(data).to_numpy(), mixture)

    def mae(**params) -> CrossValidation:
        return cross_validate(make_model("gb", loss="absolute_error", **params), data, "target", 4)

    without, with_slice, over_slice = mae(extras=()), mae(extras=("slice",)), mae(extras=(), base="slice")
    for target in ("slowdown", "slowdown_p90"):
        assert with_slice.mae(target) < 0.8 * without.mae(target)
    assert over_slice.mae() < 1.0 and over_slice.mae("slowdown_p99") < 1.0  # the memory factor is all there is left
    model = make_model("gb", n_estimators=10, base="slice").fit(data)
    loaded = InterferenceModel.load(model.save(tmp_path / "gb.npz"))  # refits the correction, not the slowdown
    np.testing.assert_allclose(loaded.predict(data).to_numpy(), model.predict(data).to_numpy())
    with pytest.raises(HwlatError, match="base must be one of"):
        make_model("gb", base="roofline").fit(data)


def test_pressure_descriptors_reveal_memory_contention_the_kinds_do_not():
    # every co-runner is labelled "cpu" and takes half of the target's core; half the workloads also stream memory
    # (measured stream pressure 1.6x) and slow the target 1.3x more: only the pressure descriptors can tell them
    # apart on held-out workloads
    scenarios, metrics = schema_frames(workloads=16, targets=4)
    streaming = scenarios["workload"].str[5:].astype(int) // 2 % 2 == 1  # not the process count (w % 2)
    scenarios[list(PRESSURE_COLUMNS)] = 1.0
    scenarios.loc[streaming, "pressure_stream"] = 1.6
    scenarios["pressure_share"] = 0.5
    slowdown = (1 + 0.2 * scenarios["target_threads"]) * np.where(streaming, 1.3, 1.0)
    for target, tail in zip(TARGETS, (1.0, 1.1, 1.3, 1.05), strict=True):
        scenarios[target] = slowdown * tail
    data = InterferenceData.from_frames(scenarios, metrics)
    logs = data.pressure()
    assert list(logs.columns) == list(EXTRAS["pressure"])
    np.testing.assert_allclose(logs["pressure_log_stream"], np.log(data.scenarios["pressure_stream"]))

    def mae(extras) -> float:
        return cross_validate(make_model("gb", loss="absolute_error", extras=extras), data, "workload", 4).mae()

    assert mae(("load", "pressure")) < 0.6 * mae(("load",))
    # a recorded workload's pressure travels with its signature into search scenarios, per target thread count
    from hwlat.spaces import get_space

    signature = WorkloadSignature.from_data(data, "cpu-x2")  # a streaming workload
    assert dict(signature.pressure)[1] == (1.6, 1.0, 1.0, 0.5, 1.0)
    arch = get_space("nb201").sample(1, seed=0)[0]
    model = make_model("gb", loss="absolute_error", extras=("load", "pressure")).fit(data)
    latency = ColocatedLatency(model, {arch: 1.0}, signature, "nb201", quantile="median")
    assert latency.describe()["pressure"] is True
    assert latency._scenarios([arch], np.array([1.0])).scenarios["pressure_stream"].eq(1.6).all()
    unmeasured = WorkloadSignature.from_data(InterferenceData.from_frames(*schema_frames()), "cpu-x1")
    assert unmeasured.pressure == ()


def test_refill_descriptor_tells_which_workloads_push_a_target_over_the_knife_edge():
    # every workload shares the target's core and looks the same to the other descriptors (kind, stream/gather
    # pressure, share); half of them evict the target's working set (refill 3.0 against 1.2) and flip its median
    # from 1.05x to 3.2x: only the refill descriptor tells them apart on held-out workloads
    scenarios, metrics = schema_frames(workloads=16, targets=4)
    evicting = scenarios["workload"].str[5:].astype(int) // 2 % 2 == 1  # not the process count (w % 2)
    scenarios[list(PRESSURE_COLUMNS)] = 1.0
    scenarios["pressure_share"] = 0.5
    scenarios["pressure_refill"] = np.where(evicting, 3.0, 1.2)
    for target, tail in zip(TARGETS, (1.0, 1.1, 1.3, 1.05), strict=True):
        scenarios[target] = np.where(evicting, 3.2, 1.05) * tail
    data = InterferenceData.from_frames(scenarios, metrics)

    def mae(extras) -> float:
        return cross_validate(make_model("gb", loss="absolute_error", extras=extras), data, "workload", 4).mae()

    assert mae(("load", "pressure", "refill")) < 0.5 * mae(("load", "pressure"))
    # a dataset whose pressure file predates the probe: the descriptor is missing (NaN), not an error
    older = InterferenceData.from_frames(scenarios.drop(columns="pressure_refill"), metrics)
    assert np.isfinite(make_model("gb", extras=("refill",)).fit(older).predict(older).to_numpy()).all()


def knife_edge_under_contention() -> InterferenceData:
    """Targets at 0.35-0.45 of a 4 ms slice beside a CPU stressor on their core and one on the other, whose memory
    streaming (stream pressure 1.0-1.6x) slows each target's own work by pressure ** sensitivity (0.5-1.5 per
    target): the time-slice mixture at that contended latency, so the median flips to ~3x where the contended
    inference crosses half a slice."""
    scenarios, metrics = schema_frames(workloads=12, targets=6)
    metrics = metrics.assign(cpu_util_mean=1.0, ctx_switches_per_s=100.0)
    workload = scenarios["workload"].str[5:].astype(int).to_numpy()
    target = scenarios["target"].str[-1].astype(int).to_numpy()
    stream = 1.0 + 0.6 * workload / 11
    isolated = 4.0 * (0.35 + 0.02 * target)
    contention = stream ** (0.5 + 0.2 * target)
    mix = json.dumps([{"kind": "cpu", "threads": 1, "intensity": 1.0}] * 2)
    scenarios = scenarios.assign(corunners=mix, placement="pinned", target_threads=1, disturbed=0,
                                 time_slice_ms=4.0, pressure_stream=stream, pressure_gather=1.0,
                                 pressure_compute=1.0, pressure_share=0.5)
    contended = InterferenceData.from_frames(scenarios.assign(isolated_median_ms=isolated * contention), metrics)
    truth = contention[:, None] * np.exp(contended.slice_log_slowdowns())
    scenarios = scenarios.assign(isolated_median_ms=isolated, **dict(zip(TARGETS, truth.T)))
    return InterferenceData.from_frames(scenarios, metrics)


def test_contended_slice_predicts_the_knife_edge_flips_of_held_out_workloads(tmp_path):
    data = knife_edge_under_contention()
    flips = data.targets()[:, 0] > 2
    assert 0.2 < flips.mean() < 0.8  # both sides of the knife edge are there

    def cv(model) -> CrossValidation:
        return cross_validate(model, data, "workload", 4)

    contended = cv(make_model("contended-slice"))
    assert contended.mae() < 3.0, contended.folds
    assert cv(make_model("slice")).mae() > 5 * contended.mae()  # the mixture at the isolated latency misses flips
    over = cv(make_model("gb", loss="absolute_error", extras=("slice", "pressure"), base="contended"))
    assert over.mae() < 3.0, over.folds
    model = make_model("gb", n_estimators=10, extras=("slice", "pressure"), base="contended").fit(data)
    loaded = InterferenceModel.load(model.save(tmp_path / "gb.npz"))  # the fitted base travels with the model
    np.testing.assert_allclose(loaded.predict(data).to_numpy(), model.predict(data).to_numpy())
    plain = make_model("contended-slice").fit(data)
    np.testing.assert_allclose(InterferenceModel.load(plain.save(tmp_path / "c.npz")).predict(data).to_numpy(),
                               plain.predict(data).to_numpy())
    with pytest.raises(HwlatError, match="base must be one of none, slice, contended, got 'roofline'"):
        make_model("gb", base="roofline").fit(data)
    with pytest.raises(HwlatError, match="contention kernels must be among stream, gather, compute, got disk"):
        make_model("contended-slice", kernels=("stream", "disk")).fit(data)
    with pytest.raises(HwlatError, match="needs smoothing > 0 and ridge >= 0, got 0 and 0.01"):
        make_model("contended-slice", smoothing=0).fit(data)


def test_transformer_learns_the_correction_to_the_time_slice_mixture(tmp_path):
    # over the mixture, the nets only have to learn the memory factor (log 1.2 beside membw, 0 beside cpu); learning
    # the slowdowns themselves, they would also have to learn the preemption steps and tails
    data, mixture, memory = preempted_and_memory_bound()
    tiny = {**TINY, "extras": (), "validation_fraction": 0}  # no early stop: 15 epochs
    over = TransformerInterference(**tiny, base="slice").fit(data)
    predicted = over.predict(data).to_numpy()
    correction = np.log(predicted / mixture).mean(axis=1)
    assert correction[memory].mean() - correction[~memory].mean() == pytest.approx(np.log(1.2), abs=0.08)
    plain = TransformerInterference(**tiny).fit(data).predict(data).to_numpy()
    truth = data.targets()
    assert mae_percent(predicted, truth) < 0.5 * mae_percent(plain, truth)
    assert np.all(predicted[:, 1] >= predicted[:, 0]) and np.all(predicted[:, 2] >= predicted[:, 1])
    loaded = InterferenceModel.load(over.save(tmp_path / "transformer.npz"))
    assert loaded.get_params()["base"] == "slice"
    np.testing.assert_allclose(loaded.predict(data).to_numpy(), predicted, rtol=1e-6)
    with pytest.raises(HwlatError, match="base must be one of none, slice, got 'roofline'"):
        TransformerInterference(**TINY, base="roofline").fit(data)


def test_relative_losses_learn_and_stay_finite(synthetic):
    data = InterferenceData.from_frames(*schema_frames(workloads=8))
    none = cross_validate(make_model("none"), data, "workload", 3).mae()
    assert cross_validate(make_model("gb", loss="relative", n_estimators=30), data, "workload", 3).mae() < 0.5 * none
    predicted = TransformerInterference(**TINY, loss="relative").fit(synthetic).predict(synthetic).to_numpy()
    assert np.isfinite(predicted).all() and np.all(predicted[:, 1] >= predicted[:, 0])
    with pytest.raises(HwlatError, match="loss must be one of"):
        TransformerInterference(**{**TINY, "loss": "huber"}).fit(synthetic)


def test_nested_tuning_chooses_inside_the_training_folds(synthetic):
    grid = [{"max_depth": 1}, {"max_depth": 2}]
    scores, best = tune(make_model("gb", n_estimators=20), synthetic, grid, "workload", 3)
    assert len(scores) == 2 and best == grid[int(scores["mae_slowdown"].to_numpy().argmin())]
    result = cross_validate(make_model("gb", n_estimators=20), synthetic, "workload", 3, grid=grid, inner_folds=2)
    assert all(json.loads(chosen) in grid for chosen in result.folds["chosen"])


def edges(arch: str) -> float:
    """Parametric edges of an NB201 cell: a cheap stand-in for accuracy."""
    from hwlat.spaces import get_space

    return float(sum(op.startswith("nor_conv") for op in get_space("nb201").ops(arch)))


@pytest.mark.slow
def test_search_minimises_p90_latency_under_a_recorded_workload(recorded):
    from hwlat.predictors import shipped_predictor
    from hwlat.search import Constraint, FunctionMetric, run_search
    from hwlat.spaces import get_space

    table = pd.read_csv(PROJECT_ROOT / "data" / "nb201-cpu" / "measurements.csv")
    table = table[(table["platform"] == "onnxruntime/t1/b1") & (table["tag"].isna())].head(10)
    isolated = shipped_predictor().adapt(table["arch"].tolist(), table["median_ms"].to_numpy())
    model = make_model("transformer", **TINY).fit(recorded)
    workload = recorded.scenarios["workload"].value_counts().index[0]
    with pytest.raises(HwlatError, match=f"workload '{workload}' was recorded at intensities"):
        WorkloadSignature.from_data(recorded, workload)  # this mix was recorded at duty cycles 0.5 and 1
    signature = WorkloadSignature.from_data(recorded, workload, intensity=1.0)
    assert len(signature.windows) == ((recorded.scenarios["workload"] == workload)
                                      & (recorded.scenarios["intensity"] == 1.0)).sum() > 1
    latency = ColocatedLatency(model, isolated, signature, "nb201", quantile="p90")
    archs = get_space("nb201").sample(6, seed=1)  # few: FLOPs of a new NB201 cell take ~0.3 s
    slowdowns = latency.slowdowns(archs)
    np.testing.assert_allclose(latency(archs), isolated.predict(archs) * slowdowns["slowdown_p90"].to_numpy())
    median = ColocatedLatency(model, isolated, latency.signature, "nb201", quantile="median")
    assert np.all(latency(archs) >= median(archs)) and latency.name == f"p90_ms_under_{workload}"
    budget = float(np.quantile(latency(archs), 0.75))
    result = run_search("nb201", [FunctionMetric("edges", edges, "max")], constraints=[Constraint(latency, budget)],
                        trials=8, seed=0, population_size=4)
    done = result.evaluated
    assert len(done) == 8 and (done[latency.name] <= budget).all()
    np.testing.assert_allclose(done[latency.name], latency(done["arch"].tolist()), rtol=1e-6)
    described = result.settings["constraints"][0]
    assert described["metric"] == latency.name and described["limit"] == budget


def test_signature_errors_name_the_problem(synthetic):
    with pytest.raises(HwlatError, match="no scenario with workload 'gpu-x1'"):
        WorkloadSignature.from_data(synthetic, "gpu-x1")
    with pytest.raises(HwlatError, match="quantile 'p95'"):
        ColocatedLatency(make_model("none").fit(synthetic), {}, WorkloadSignature.from_data(synthetic, "cpu-x1"),
                         quantile="p95")


@pytest.fixture
def cli() -> typer.Typer:
    """The model commands on a throwaway app, as the `interference` app will carry them."""
    from hwlat.cli import _interference_model

    app = typer.Typer()
    for name in ("train", "evaluate", "predict"):
        app.command(name)(getattr(_interference_model, name))
    return app


@pytest.mark.slow
def test_train_evaluate_predict_commands(cli, tmp_path):
    runner = CliRunner()
    model = tmp_path / "gb.npz"
    trained = runner.invoke(cli, ["train", "--data", str(DATA), "--out", str(model), "--model", "gb"])
    assert trained.exit_code == 0, trained.output
    assert "gb interference model trained on" in trained.output and model.exists()
    predicted = runner.invoke(cli, ["predict", "--model", str(model), "--data", str(DATA),
                                    "--out", str(tmp_path / "p.csv")])
    assert predicted.exit_code == 0, predicted.output
    rows = pd.read_csv(tmp_path / "p.csv")
    assert {"pred_slowdown", "slowdown", "workload"} <= set(rows.columns) and len(rows) > 0
    evaluated = runner.invoke(cli, ["evaluate", "--data", str(DATA), "--model", "none", "--model", "linear",
                                    "--split", "target", "--folds", "3", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    results = json.loads(evaluated.output)["results"]
    assert [r["model"] for r in results] == ["none", "linear"] and all(len(r["fold_mae_slowdown"]) == 3
                                                                       for r in results)
    second = PROJECT_ROOT / "data" / "interference-cpu-pinned-b"  # another host's recording
    both = runner.invoke(cli, ["train", "--data", str(DATA), "--data", str(second), "--out", str(tmp_path / "b.npz"),
                               "--model", "none"])
    assert both.exit_code == 0, both.output
    scenarios = len(InterferenceData.load(DATA)) + len(InterferenceData.load(second))
    assert f"trained on {scenarios} scenarios" in both.output
    pooled = runner.invoke(cli, ["evaluate", "--data", str(DATA), "--extra-train", str(second), "--model", "linear",
                                 "--split", "target", "--folds", "3", "--json"])
    assert pooled.exit_code == 0, pooled.output
    assert json.loads(pooled.output)["extra_train"] == [str(second)]
    pooled_linear = json.loads(pooled.output)["results"][0]  # same folds, more training data: another fit
    assert pooled_linear["scenarios"] == results[1]["scenarios"]
    assert pooled_linear["mae_slowdown"] != pytest.approx(results[1]["mae_slowdown"])
    failed = runner.invoke(cli, ["evaluate", "--data", str(DATA), "--split", "device"])
    assert failed.exit_code != 0 and "--split must be one of" in str(failed.exception)
    failed = runner.invoke(cli, ["train", "--data", str(DATA), "--out", str(tmp_path / "no" / "m.npz")])
    assert failed.exit_code != 0 and "does not exist" in str(failed.exception)  # before any training
    over = tmp_path / "gb-over-slice.npz"
    trained = runner.invoke(cli, ["train", "--data", str(DATA), "--out", str(over), "--model", "gb", "--base", "slice"])
    assert trained.exit_code == 0, trained.output
    assert InterferenceModel.load(over).base == "slice"
    contended = tmp_path / "gb-over-contended.npz"
    trained = runner.invoke(cli, ["train", "--data", str(PINNED_C), "--out", str(contended), "--model", "gb",
                                  "--base", "contended"])
    assert trained.exit_code == 0, trained.output
    assert InterferenceModel.load(contended).base_model_.kind == "contended-slice"
    for wrong, message in ((["--model", "gb", "--base", "mixture"], "--base must be one of none, slice, contended"),
                           (["--model", "linear", "--base", "slice"], "--base slice applies to gb and transformer")):
        failed = runner.invoke(cli, ["train", "--data", str(DATA), "--out", str(tmp_path / "bad.npz"), *wrong])
        assert failed.exit_code != 0 and message in str(failed.exception) and not (tmp_path / "bad.npz").exists()


def test_colocated_latency_keeps_the_signature_placement():
    from hwlat.spaces import get_space

    scenarios, metrics = slice_frames([1.0, 1.0], corunners=1)  # one workload, one CPU stressor, recorded twice:
    data = InterferenceData.from_frames(scenarios.assign(placement=["pinned", "free"]), metrics)  # pinned and free
    workload = str(scenarios["workload"].iloc[0])
    with pytest.raises(HwlatError, match=f"workload '{workload}' was recorded with placements"):
        WorkloadSignature.from_data(data, workload)
    with pytest.raises(HwlatError, match="no recording with placement 'shared'"):
        WorkloadSignature.from_data(data, workload, placement="shared")
    arch = get_space("nb201").sample(1, seed=0)[0]
    p90 = {}
    for where in ("pinned", "free"):
        signature = WorkloadSignature.from_data(data, workload, placement=where)
        assert signature.placement == where and len(signature.windows) == 1
        latency = ColocatedLatency(make_model("slice").fit(data), {arch: 1.0}, signature, "nb201", quantile="p90")
        assert latency.describe()["placement"] == where
        p90[where] = float(latency([arch])[0])
    # pinned, the stressor has the other core to itself; free, it shares the target's core half the time, so a
    # 1 ms inference (a quarter of a 4 ms slice) waits a slice in its tail
    assert p90["pinned"] == pytest.approx(1.0) and p90["free"] > 2.0
