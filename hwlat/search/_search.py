"""`run_search`: an Optuna study over a space's architectures, in this process or in several worker processes."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Sequence

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from hwlat._errors import HwlatError
from hwlat.search._metrics import Constraint, Metric
from hwlat.search._objective import ArchObjective
from hwlat.search._result import SearchResult
from hwlat.search._samplers import STRATEGIES, make_sampler
from hwlat.search._storage import open_storage, public_url

#: proposals (including rejected ones) a worker may make per completed trial of the budget before it gives up
_PROPOSALS_PER_TRIAL = 50


def run_search(space: str, objectives: Sequence[Metric], *, constraints: Sequence[Constraint] = (),
               extra: Sequence[Metric] = (), strategy: str = "evolution", trials: int = 300, seed: int = 0,
               storage: str | None = None, study_name: str | None = None, workers: int = 1,
               population_size: int | None = None, heartbeat_s: float = 10.0, initial: Sequence[str] = (),
               progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Search `space` for architectures optimal in `objectives` under hard `constraints`.

    `trials` counts completed (fully scored) trials; an arch that a constraint on a cheap metric (predicted
    latency, params) rejects is pruned without costly queries and does not count. `storage` is an Optuna
    storage URL (SQLite file, PostgreSQL, ...) or a `.log` journal file; with one, a rerun of the same
    `study_name` resumes, and `workers` > 1 runs that many processes on it (heartbeats fail the trial of a
    killed worker and retry its architecture). `progress(done, total)` is called as trials complete.
    `extra` metrics are recorded beside the objectives (e.g. params) without being optimised. `initial` archs
    (e.g. the original model and other known designs) are scored first, whatever the strategy; a resumed study
    does not score them twice.
    """
    if trials < 1:
        raise HwlatError(f"trial budget must be a positive number, got {trials}")
    if workers < 1:
        raise HwlatError(f"workers must be a positive number, got {workers}")
    if workers > 1 and storage is None:
        raise HwlatError("several workers need a shared storage (an SQLite/PostgreSQL URL or a journal file)")
    if strategy not in STRATEGIES:
        raise HwlatError(f"unknown search strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    objective = ArchObjective(space, objectives, constraints, extra)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name or f"{space}-{strategy}-seed{seed}"
    study = optuna.create_study(storage=open_storage(storage, heartbeat_s), study_name=name,
                                directions=objective.directions, load_if_exists=True)
    settings = {"space": space, "strategy": strategy, "strategy_description": STRATEGIES[strategy],
                "trials": trials, "seed": seed, "workers": workers, "study": name,
                "storage": public_url(storage) if storage else "in-memory", "population_size": population_size,
                "objectives": [m.describe() for m in objectives], "constraints": [c.describe() for c in constraints],
                "extra_metrics": [m.describe() for m in extra]}
    _check_study(study, json.loads(json.dumps(settings, default=str)))
    if _completed(study) < trials:
        for arch in initial:
            study.enqueue_trial(objective.space.to_choices(objective.space.canonical(arch)), skip_if_exists=True)
    start = time.perf_counter()
    job = (storage, name, objective, strategy, seed, population_size, trials, heartbeat_s)
    if workers == 1:
        _optimize(study, *job[2:7], progress=progress)
    else:
        _run_workers(study, job, workers, progress)
    return SearchResult.from_study(study, wall_s=time.perf_counter() - start)


def _check_study(study: optuna.Study, settings: dict) -> None:
    """Record the settings of a new study; a resumed one must have the same objectives and constraints."""
    known = study.user_attrs.get("settings")
    if known is None:
        study.set_user_attr("settings", settings)
        return

    def signature(given: dict) -> tuple:
        return (given["space"], [(m["name"], m["goal"]) for m in given["objectives"]],
                [c["key"] for c in given["constraints"]])

    if signature(known) != signature(settings):
        raise HwlatError(f"study {study.study_name!r} exists with other space, objectives or constraints "
                         f"{signature(known)}; choose another study name")


def _optimize(study: optuna.Study, objective: ArchObjective, strategy: str, seed: int, population_size: int | None,
              trials: int, progress: Callable[[int, int], None] | None = None) -> None:
    """Run trials in this process until the study holds `trials` completed ones."""
    study.sampler = make_sampler(strategy, objective, seed, population_size)
    done = _completed(study)
    if done >= trials:
        return
    callbacks = [MaxTrialsCallback(trials, states=(TrialState.COMPLETE,))]
    if progress is not None:
        progress(done, trials)
        callbacks.append(lambda s, _t: progress(_completed(s), trials))
    study.optimize(objective, n_trials=(trials - done) * _PROPOSALS_PER_TRIAL, callbacks=callbacks,
                   gc_after_trial=False)


def _completed(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _worker(job: tuple, index: int) -> None:
    """Entry point of a worker process: its own sampler seed, the shared study."""
    storage, name, objective, strategy, seed, population_size, trials, heartbeat_s = job
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=open_storage(storage, heartbeat_s))
    _optimize(study, objective, strategy, seed + 1000 * index, population_size, trials)


def _run_workers(study: optuna.Study, job: tuple, workers: int, progress: Callable[[int, int], None] | None) -> None:
    """Start `workers` processes on the shared study, report progress, replace a worker that dies."""
    context = multiprocessing.get_context("spawn")
    trials = job[6]
    started = 0

    def start() -> multiprocessing.Process:
        nonlocal started
        process = context.Process(target=_worker, args=(job, started), daemon=True)
        started += 1
        process.start()
        return process

    running = [start() for _ in range(workers)]
    try:
        while running:
            time.sleep(0.5)
            done = _completed(study)
            if progress is not None:
                progress(min(done, trials), trials)
            for process in list(running):
                if process.is_alive():
                    continue
                running.remove(process)
                if process.exitcode != 0 and done < trials:
                    if started >= 3 * workers:
                        raise HwlatError(f"search workers keep failing (exit code {process.exitcode}); "
                                         "run with --workers 1 to see the error")
                    running.append(start())
    finally:
        for process in running:
            process.terminate()
            process.join()
