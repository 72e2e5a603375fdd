"""Fit many detectors at once: joblib's process pool here, or a Dask distributed cluster.

One job fits one service's detector on its metrics (the isolation forest needs a service's
metrics together; the per-metric baselines and seasonal models inside a job are cheap next to
the process overhead of splitting them further). Results come back in the order of the jobs
whatever the backend, and a fit is a pure function of its configuration and data, so the same
jobs give byte-identical models on either backend.

``backend="dask"`` runs the same jobs through joblib's Dask backend: on a new ``LocalCluster``
(one single-threaded worker process per job slot), or on an existing cluster when given the
scheduler's address, for users who outgrow one machine.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import pandas as pd

from models.bundle import dump_state, load_state
from training.detectors import fit_detector
from training.errors import TrainingError

BACKENDS = ("loky", "dask", "sequential")


class ParallelError(TrainingError):
    """A backend that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class Fitted:
    """A fitted detector's ``state.npz`` bytes as the fitting process wrote them, or why the
    fit failed (one service's bad data must not sink the others).

    ``model`` decodes the bytes on first use: the pipeline needs the model to evaluate it, a
    caller that only stores or counts the fits does not, and decoding every fit in the one
    parent process (about 50 ms for an ensemble of 14 days x 5 metrics) would queue behind
    the workers that feed it.
    """

    state: bytes = b""
    error: str = ""

    @functools.cached_property
    def model(self) -> Any:
        """The fitted detector (None for a failed fit), decoded from ``state`` once."""
        return load_state(self.state) if self.state else None


@dataclass(frozen=True)
class FitJob:
    """Fit the detector ``config`` describes on ``history``; ``key`` names it in progress output."""

    key: str
    config: dict
    history: pd.DataFrame
    exclude: list[tuple] | None = None


def effective_jobs(n_jobs: int, n_tasks: int) -> int:
    """Worker count: ``n_jobs`` (-1 = every core), never more than there are tasks."""
    cores = os.cpu_count() or 1
    wanted = cores if n_jobs in (-1, 0) else (max(1, cores + 1 + n_jobs) if n_jobs < 0 else n_jobs)
    return max(1, min(wanted, n_tasks))


@contextlib.contextmanager
def _dask_context(n_jobs: int, scheduler: str | None) -> Iterator[None]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ParallelError("--backend dask needs dask[distributed]: pip install 'aiops-ecs[dask]'") from None
    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = stack.enter_context(Client(scheduler, timeout="10s"))
            except (OSError, TimeoutError) as exc:
                raise ParallelError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        else:
            cluster = stack.enter_context(LocalCluster(n_workers=n_jobs, threads_per_worker=1,
                                                       processes=True, dashboard_address=None))
            client = stack.enter_context(Client(cluster))
        stack.enter_context(joblib.parallel_config(backend="dask", wait_for_workers_timeout=30))
        del client  # the backend finds the current client itself
        yield


def iter_fits(jobs: list[FitJob], *, n_jobs: int = -1, backend: str = "loky",
              scheduler: str | None = None) -> Iterator[tuple[int, Fitted]]:
    """Fit every job; yield ``(position in jobs, Fitted)`` as each one finishes.

    Consuming the fits as they come lets the caller evaluate and publish one service while the
    workers fit the next, and drop each model when done with it, so memory does not grow with
    the number of services. Each job returns its model's serialized state, which the bundle
    stores as is: that is what makes the bundles of every backend byte-identical (see
    ``models.bundle.dump_state``).

    Parameters
    ----------
    jobs : what to fit.
    n_jobs : parallel workers (-1: one per core); capped at the number of jobs.
    backend : ``loky`` (joblib's process pool), ``dask`` or ``sequential`` (in this process).
    scheduler : a Dask scheduler address (``tcp://host:8786``) for ``dask``; a LocalCluster
        is started when None.
    """
    if backend not in BACKENDS:
        raise ParallelError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    workers = effective_jobs(n_jobs, len(jobs))
    if backend == "sequential" or (backend == "loky" and workers == 1):
        for i, job in enumerate(jobs):
            yield i, _fitted(_fit_state(job.config, job.history, job.exclude))
        return
    context = _dask_context(workers, scheduler) if backend == "dask" else contextlib.nullcontext()
    with context:
        parallel = joblib.Parallel(n_jobs=workers, return_as="generator_unordered",
                                   **({"backend": "loky"} if backend == "loky" else {}))
        for i, outcome in parallel(joblib.delayed(_indexed_fit)(i, job.config, job.history, job.exclude)
                                   for i, job in enumerate(jobs)):
            yield i, _fitted(outcome)


def fit_all(jobs: list[FitJob], *, n_jobs: int = -1, backend: str = "loky",
            scheduler: str | None = None,
            on_done: Callable[[str], None] | None = None) -> list[Fitted]:
    """Fit every job and return the fits in the order of ``jobs`` (see ``iter_fits``);
    ``on_done`` is called with each job's key as it finishes (for a progress bar)."""
    results: list[Any] = [None] * len(jobs)
    for i, fitted in iter_fits(jobs, n_jobs=n_jobs, backend=backend, scheduler=scheduler):
        results[i] = fitted
        if on_done:
            on_done(jobs[i].key)
    return results


def _fitted(outcome: bytes | str) -> Fitted:
    if isinstance(outcome, str):
        return Fitted(error=outcome)
    return Fitted(outcome)


def _fit_state(config: dict, history: pd.DataFrame, exclude) -> bytes | str:
    """The fitted model's state bytes, or the reason the fit failed (bad data or settings)."""
    try:
        return dump_state(fit_detector(config, history, exclude))
    except (ValueError, KeyError, TypeError, ArithmeticError, np.linalg.LinAlgError) as exc:
        text = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip()
        return f"fit failed: {text.splitlines()[0] if text else type(exc).__name__}"


def _indexed_fit(i: int, config: dict, history: pd.DataFrame, exclude) -> tuple[int, bytes | str]:
    return i, _fit_state(config, history, exclude)
