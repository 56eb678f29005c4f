"""Search API: spaces as decisions, the aging-evolution sampler, constraints, results checked against truth."""

from __future__ import annotations

import itertools

import moocore
import numpy as np
import pytest

from conftest import require_shared

from hwlat._errors import HwlatError
from hwlat.datasets import load_dataset
from hwlat.search import (STRATEGIES, Constraint, FunctionMetric, LatencyLookup, MnasReward, SpaceCount, TableMetric,
                          nats_bench_accuracy, run_search)
from hwlat.spaces import get_space

SPACE = get_space("nb201")


def edge_count(arch: str) -> float:
    """Number of edges that carry a parametric op: a cheap, deterministic stand-in objective."""
    return float(sum(op.startswith("nor_conv") for op in SPACE.ops(arch)))


def score(arch: str) -> float:
    """A deterministic 'accuracy' with interactions, so the search has something to find."""
    ops = SPACE.ops(arch)
    return float(sum(i * (op == "nor_conv_3x3") for i, op in enumerate(ops, 1)) + 0.5 * (ops[0] != "none"))


@pytest.mark.parametrize("name", ["nb201", "fbnet"])
def test_choices_round_trip(name):
    space = get_space(name)
    for arch in space.sample(20, seed=3):
        assert space.from_choices(space.to_choices(arch)) == arch
    assert set(space.choices()) == set(space.to_choices(arch))


def test_bad_choices_name_the_decision():
    with pytest.raises(HwlatError, match="edge '1<-0'"):
        SPACE.from_choices({})
    with pytest.raises(HwlatError, match="conv_7x7"):
        SPACE.from_choices({**SPACE.to_choices(SPACE.arch(0)), "2<-1": "conv_7x7"})


def test_evolution_proposes_unique_valid_one_edit_children():
    def valid(arch):  # a validity rule the sampler must respect: edge 1<-0 never 'none'
        return SPACE.ops(arch)[0] != "none"

    params = SpaceCount("nb201", "params")
    objective_archs = []

    def recorded(arch):
        objective_archs.append(arch)
        return score(arch)

    result = run_search("nb201", [FunctionMetric("score", recorded), params], strategy="evolution", trials=150,
                        seed=1, population_size=20, extra=[FunctionMetric("edges", edge_count, "min")])
    done = result.trials[result.trials["state"] == "COMPLETE"]
    assert len(done) == 150 and done["arch"].is_unique  # no evaluation spent twice
    # after the random phase every child is one edit away from an earlier completed trial
    seen = list(done["arch"][:20])
    for arch in done["arch"][20:]:
        distances = [sum(a != b for a, b in zip(SPACE.ops(arch), SPACE.ops(s))) for s in seen]
        assert min(distances) == 1
        seen.append(arch)
    assert len(objective_archs) == 150
    # validity through the space: an invalid mix never reaches the objective
    from hwlat.search import AgingEvolutionSampler

    sampler = AgingEvolutionSampler(10, 3, search_space=SPACE.choices(), seed=0,
                                    is_valid=lambda p: valid(SPACE.from_choices(p)))
    import optuna

    study = optuna.create_study(sampler=sampler, directions=["maximize"])
    study.optimize(lambda t: score(SPACE.from_choices({k: t.suggest_categorical(k, v)
                                                       for k, v in SPACE.choices().items()})), n_trials=60)
    assert all(valid(SPACE.from_choices(t.params)) for t in study.trials)


def test_tournament_size_is_checked():
    from hwlat.search import AgingEvolutionSampler

    with pytest.raises(HwlatError, match="tournament size"):
        AgingEvolutionSampler(5, 6)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_cheap_constraint_rejects_before_costly_queries(strategy):
    queried = []

    def accuracy(arch):
        queried.append(arch)
        return score(arch)

    budget = 2.0
    edges = FunctionMetric("edges", edge_count, "min", costly=False)
    result = run_search("nb201", [FunctionMetric("score", accuracy), edges],
                        constraints=[Constraint(edges, budget)], strategy=strategy, trials=40, seed=0)
    done = result.trials[result.trials["state"] == "COMPLETE"]
    assert len(done) == 40
    assert all(edge_count(a) <= budget for a in queried)  # no costly query for an infeasible arch
    assert done["feasible"].all() and (result.front["edges"] <= budget).all()
    assert result.queries == len(set(queried))
    if strategy == "evolution":
        assert (result.trials["state"] == "PRUNED").sum() == 0  # rejected before proposal, not after


def test_costly_constraint_is_recorded_and_front_is_feasible():
    accuracy = FunctionMetric("score", score)
    params = SpaceCount("nb201", "params")
    result = run_search("nb201", [params], constraints=[Constraint(accuracy, 6.0)], trials=60, seed=2)
    feasible = result.evaluated[result.evaluated["feasible"]]
    assert (feasible["score"] >= 6.0).all() and (~result.evaluated["feasible"]).any()
    assert result.best()["arch"] in set(feasible["arch"])
    assert result.best()["params"] == feasible["params"].min()


def test_mnasnet_reward_matches_the_formula():
    accuracy = TableMetric("acc", {"a": 70.0, "b": 72.0, "c": 75.0})
    latency = TableMetric("lat", {"a": 4.0, "b": 5.0, "c": 10.0}, goal="min", costly=False)
    reward = MnasReward(accuracy, latency, target=5.0, alpha=-0.07, beta=-0.5)
    expected = [70 * (4 / 5) ** -0.07, 72.0, 75 * 2 ** -0.5]
    np.testing.assert_allclose(reward(["a", "b", "c"]), expected)
    with pytest.raises(HwlatError, match="positive"):
        MnasReward(accuracy, latency, target=0)


@pytest.mark.parametrize("limit, slack, message", [(-1, 0, "budget must be positive"), (np.inf, 0, "finite"),
                                                   (5, 1.5, "slack")])
def test_bad_constraints(limit, slack, message):
    with pytest.raises(HwlatError, match=message):
        Constraint(FunctionMetric("lat", edge_count, "min"), limit, slack)


def test_bad_search_inputs():
    accuracy = FunctionMetric("score", score)
    with pytest.raises(HwlatError, match="unknown search strategy"):
        run_search("nb201", [accuracy], strategy="annealing")
    with pytest.raises(HwlatError, match="trial budget"):
        run_search("nb201", [accuracy], trials=0)
    with pytest.raises(HwlatError, match="shared storage"):
        run_search("nb201", [accuracy], workers=2)
    with pytest.raises(HwlatError, match="both called"):
        run_search("nb201", [accuracy, FunctionMetric("score", edge_count)])
    with pytest.raises(HwlatError, match="space 'ofa' cannot be searched"):
        run_search("ofa", [accuracy])
    with pytest.raises(HwlatError, match="no value for arch"):
        TableMetric("acc", {})(["x"])


def test_resumed_study_keeps_its_objectives(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    accuracy = FunctionMetric("score", score)
    first = run_search("nb201", [accuracy], trials=10, storage=storage, study_name="s")
    again = run_search("nb201", [accuracy], trials=15, storage=storage, study_name="s")
    assert first.summary()["completed"] == 10 and again.summary()["completed"] == 15
    assert set(first.evaluated["arch"]) <= set(again.evaluated["arch"])
    with pytest.raises(HwlatError, match="other space, objectives or constraints"):
        run_search("nb201", [FunctionMetric("other", score)], trials=5, storage=storage, study_name="s")


@pytest.mark.parametrize("strategy", ["evolution", "nsga2"])
def test_initial_archs_are_scored_first_and_once(tmp_path, strategy):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    initial = SPACE.sample(3, seed=7)
    scored = []

    def recorded(arch: str) -> float:
        scored.append(arch)
        return score(arch)

    run_search("nb201", [FunctionMetric("score", recorded)], strategy=strategy, trials=5, initial=initial,
               storage=storage, study_name="s")
    assert scored[:3] == initial
    again = run_search("nb201", [FunctionMetric("score", recorded)], strategy=strategy, trials=8, initial=initial,
                       storage=storage, study_name="s")
    assert again.summary()["completed"] == 8
    assert len(scored) == 8 and not set(scored[5:]) & set(initial)  # resumed: the initial archs are not rescored


@pytest.fixture(scope="module")
def nb201_truth():
    latency = load_dataset(require_shared("data/help/nasbench201"), "nb201")
    accuracy = nats_bench_accuracy("cifar10", require_shared("data/nats-bench/nats_bench.csv"))
    return latency, accuracy


def test_search_against_exhaustive_truth(nb201_truth):
    """Hypervolume over the true front's (nadir + 10 % reference) on FPGA latency vs CIFAR-10 accuracy."""
    dataset, accuracy = nb201_truth
    truth = LatencyLookup(dataset, "fpga")
    points = np.c_[truth(list(dataset.archs)), -accuracy(list(dataset.archs))]
    front = points[moocore.is_nondominated(points)]
    reference = front.max(axis=0) + 0.1 * (front.max(axis=0) - front.min(axis=0))
    ratios = {}
    for strategy in ("evolution", "random"):
        found = run_search("nb201", [accuracy, truth], strategy=strategy, trials=300, seed=0).evaluated
        ours = np.c_[found["latency_ms"], -found["cifar10"]]
        ratios[strategy] = moocore.hypervolume(ours, ref=reference) / moocore.hypervolume(front, ref=reference)
    assert ratios["evolution"] > 0.97 and ratios["evolution"] > ratios["random"] + 0.02


def test_constrained_pick_is_checked_against_truth(nb201_truth):
    dataset, accuracy = nb201_truth
    truth = LatencyLookup(dataset, "fpga")
    budget = 5.0
    optimum = accuracy(list(dataset.archs))[dataset["fpga"] <= budget].max()
    # predicted latency = truth x 0.9: the search believes candidates are faster than they are
    optimistic = TableMetric("latency_ms", {a: 0.9 * v for a, v in truth.values.items()}, "min", costly=False)
    result = run_search("nb201", [accuracy], constraints=[Constraint(optimistic, budget)], trials=300, seed=0)
    best = result.best()
    pick, checks = result.verified_best(truth, checks=50)
    assert pick is not None and pick["true_latency_ms"] <= budget < truth([best["arch"]])[0] / 0.9 * 1.2
    assert checks >= 1 and pick["cifar10"] <= optimum
    checked = result.verify(truth, result.evaluated)
    assert checked["violates_latency_ms<=5"].any()  # the optimistic predictor hid violations; verify finds them


def test_every_architecture_in_choices_is_reachable():
    combos = itertools.islice(itertools.product(*SPACE.choices().values()), 0, 15625, 997)
    for combo in combos:
        arch = SPACE.from_choices(dict(zip(SPACE.choices(), combo)))
        assert SPACE.canonical(arch) == arch


def test_workers_share_one_study(tmp_path):
    from search_worker import slow_score

    storage = f"sqlite:///{tmp_path / 'workers.db'}"
    result = run_search("nb201", [FunctionMetric("score", slow_score), SpaceCount("nb201", "params")], trials=30,
                        storage=storage, study_name="two", workers=2, heartbeat_s=1.0)
    states = result.trials["state"].value_counts().to_dict()
    assert 30 <= states["COMPLETE"] <= 31 and "RUNNING" not in states  # a worker may finish one trial past the budget
    assert result.settings["workers"] == 2 and len(result.front) >= 1


def test_shipped_predictor_is_rebuilt_from_the_project_data():
    """The shipped nb201-cpu predictor is exactly what fitting on data/nb201-cpu gives (no stale artefact)."""
    from conftest import PROJECT_ROOT

    from hwlat.predictors import make_predictor, shipped_predictor

    dataset = load_dataset(PROJECT_ROOT / "data" / "nb201-cpu" / "measurements.csv", "nb201")
    shipped = shipped_predictor()
    rebuilt = make_predictor("hwlat").fit(dataset)
    assert shipped.devices_ == list(dataset.devices) and shipped.get_params() == rebuilt.get_params()
    # compare what the fit determines: predictions. With a one-hot encoding the per-op costs and the intercept are
    # collinear, and another CPU's BLAS splits them differently (by ~3e-3) while predicting the same latencies.
    archs = list(dataset.archs)
    known = np.random.default_rng(0).choice(len(archs), 10, replace=False)
    for device in dataset.devices:
        adapted = [predictor.adapt([archs[i] for i in known], dataset.latency[device][known]).predict(archs)
                   for predictor in (shipped, rebuilt)]
        np.testing.assert_allclose(*adapted, rtol=1e-5)  # float32 arithmetic
