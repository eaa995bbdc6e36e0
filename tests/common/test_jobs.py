"""Background jobs: passes on an interval, woken early, surviving failures."""

from __future__ import annotations

import datetime as dt
import threading

from services.common.jobs import PeriodicJob

LONG = dt.timedelta(hours=1)


def test_a_failed_pass_is_reported_and_the_next_pass_runs() -> None:
    passes: list[int] = []
    errors: list[Exception] = []
    two_passes = threading.Event()

    def run_pass() -> None:
        passes.append(len(passes))
        if len(passes) == 1:
            raise RuntimeError("first pass fails")
        two_passes.set()

    job = PeriodicJob(
        "test-job", dt.timedelta(milliseconds=10), run_pass, errors.append
    )
    job.start()
    try:
        assert two_passes.wait(10)
    finally:
        job.stop()

    assert [str(error) for error in errors] == ["first pass fails"]
    assert len(passes) >= 2


def test_wake_runs_a_pass_before_the_interval() -> None:
    ran = threading.Semaphore(0)
    job = PeriodicJob("test-job", LONG, ran.release, lambda _: None)
    job.start()
    try:
        assert ran.acquire(timeout=10)  # the first pass, at once
        job.wake()
        assert ran.acquire(timeout=10)
    finally:
        job.stop()


def test_a_job_may_wait_an_interval_before_its_first_pass() -> None:
    ran = threading.Event()
    job = PeriodicJob(
        "test-job", LONG, ran.set, lambda _: None, first_pass_at_once=False
    )
    job.start()
    try:
        assert not ran.wait(0.2)
    finally:
        job.stop()

    assert not ran.is_set()
