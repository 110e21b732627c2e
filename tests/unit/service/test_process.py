"""A job's work in a process of its own: its answer, its failure, its end when told, and its
lower CPU priority."""

from __future__ import annotations

import time

import pytest

from ffe.service.jobs.process import JobCrashedError, JobProcess, JobWorkError, RunningJob


@pytest.fixture
def jobwork(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import importlib
    from pathlib import Path

    support = Path(__file__).resolve().parents[2] / "support"
    monkeypatch.syspath_prepend(str(support))  # the job process starts with this sys.path
    return importlib.import_module("jobwork")


def test_process_when_work_returns_then_answer_progress_and_clean_exit(jobwork):
    reported: list[float] = []
    process = JobProcess(jobwork.stubborn, (None, {"sleep_s": 0}))

    answer = process.answer(reported.append)
    process.close()

    assert answer == ({"ok": True}, None)
    assert reported == [0.5]
    assert process.returncode == 0  # no abort at exit (a daemon thread reading stdin)


def test_process_when_work_raises_then_error_names_type_and_message(jobwork):
    process = JobProcess(jobwork.broken, (None, {}))

    with pytest.raises(JobWorkError, match=r"^ValueError: no bars for XYZ: import them first$"):
        process.answer(lambda fraction: None)
    process.close()

    assert process.returncode == 0


def test_running_job_when_ended_then_process_stops_at_once_and_reason_kept(jobwork):
    import threading

    running = RunningJob()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            running.run(jobwork.stubborn, (None, {"sleep_s": 60}), lambda fraction: None)
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(3.0)  # started, in its sleep
    started = time.monotonic()

    running.end("cancelled", "cancelled by test")
    thread.join(10)

    assert not thread.is_alive()
    assert time.monotonic() - started < 5.0
    assert running.reason == ("cancelled", "cancelled by test")
    assert len(outcome) == 1
    assert "without a result" in str(outcome[0])


def test_running_job_when_ended_and_work_ignores_sigterm_then_killed_after_grace(jobwork):
    import threading

    from ffe.service.jobs.process import GRACE_S

    running = RunningJob()
    deaf = threading.Event()  # its first progress: SIGTERM is ignored from now on
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            running.run(jobwork.deaf, (None, {}), lambda fraction: deaf.set())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert deaf.wait(30)
    started = time.monotonic()

    running.end("failed", "time limit")
    thread.join(GRACE_S + 8)

    assert not thread.is_alive()  # SIGKILL followed the ignored SIGTERM
    assert time.monotonic() - started < GRACE_S + 8
    assert len(outcome) == 1
    assert "killed by SIGKILL" in str(outcome[0])


def test_running_job_when_ended_after_its_process_closed_then_no_group_signalled(
    jobwork, monkeypatch
):
    import os

    running = RunningJob()
    running.run(jobwork.instant, (None, {}), lambda fraction: None)
    signalled: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda pid, signum: signalled.append((pid, signum)))

    running.end("cancelled", "cancelled too late")  # its group id may be another's by now

    assert signalled == []
    assert running.reason is None


def test_process_when_killed_without_answer_then_error_names_cause_and_settings(jobwork):
    process = JobProcess(jobwork.killed, (None, {}))

    with pytest.raises(JobCrashedError) as crashed:
        process.answer(lambda fraction: None)
    process.close()

    message = str(crashed.value)
    assert "killed by SIGKILL" in message
    assert "memory" in message
    assert "compute.max_workers" in message
    assert "jobs.time_limit_s" in message


def test_process_when_its_answer_pipe_breaks_then_its_group_ends_quietly(jobwork, capfd):
    import signal

    process = JobProcess(jobwork.pool_reporting, (None, {}))
    with pytest.raises(RuntimeError, match="enough"):  # its first report: it is under way
        process.answer(_raise("enough"))
    group = process.pid

    # As when its worker is SIGKILLed: the pipe the reports go to breaks. Its stdin stays
    # open here, so only the broken pipe can tell it.
    process._answers.close()
    deadline = time.monotonic() + 20
    while process.returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    ended = process.returncode
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _group_alive(group)
    process.close()

    assert ended == -signal.SIGTERM  # ended by its own group's SIGTERM, not an error exit
    assert not left  # the pool's worker too
    assert "Traceback" not in capfd.readouterr().err


def _raise(message: str):  # type: ignore[no-untyped-def]
    def report(fraction: float) -> None:
        raise RuntimeError(message)

    return report


def _group_alive(group: int) -> bool:
    import os

    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_process_when_nice_given_then_its_work_runs_that_much_lower(jobwork):
    import os

    here = os.nice(0)
    process = JobProcess(jobwork.nice, (None, {}), nice=10)

    answer = process.answer(lambda fraction: None)
    process.close()

    found, run_id = answer
    assert (found["nice"], run_id) == (min(19, here + 10), None)
    # Its own session is its own autogroup: niced too, or the nice weighs nothing against
    # the API's group (None: this kernel has no autogroups).
    has_groups = os.path.exists("/proc/self/autogroup")
    assert found["autogroup"] == (10 if has_groups else None)
    assert os.nice(0) == here  # this process keeps its priority
