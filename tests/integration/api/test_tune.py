"""Studies through the API: submitted as jobs, run by the API's worker, read back from the
study storage with their report; refused before queueing when they cannot run."""

from __future__ import annotations

from typing import Any

from tests.support.wait import wait_for

STUDY = {
    "strategy": "sma_cross",
    "symbol": "SP500",
    "start": "2010-01-01",
    "end": "2014-12-31",
    "params": {"fast": "5..30", "slow": "40..120"},
    "trials": 4,
    "walk_forward": "train=250,test=250",
}


def _get(api: Any, path: str) -> Any:
    return api.client.get(path, headers=api.headers())


def test_submit_when_api_runs_jobs_then_study_runs_and_is_read_back(jobs_api) -> None:
    api = jobs_api

    job = api.client.post("/api/v1/tune", json=STUDY, headers=api.headers("trader"))

    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    done = wait_for(
        lambda: (found := _get(api, f"/api/v1/jobs/{job_id}").json())["finished_at"] and found,
        timeout=120,
    )
    assert done["status"] == "finished", done["error"]
    result = done["result"]
    assert result["study"] == f"job-{job_id}"
    assert result["trials"] == 4
    assert set(result["best"]["params"]) == {"fast", "slow"}
    assert result["holdout"]["bars"] > 0
    assert [j["id"] for j in _get(api, "/api/v1/tune").json()["items"]] == [job_id]
    names = [s["name"] for s in _get(api, "/api/v1/tune/studies").json()["items"]]
    assert names == [f"job-{job_id}"]
    shown = _get(api, f"/api/v1/tune/studies/job-{job_id}").json()
    assert len(shown["trial_list"]) == 4
    assert shown["result"]["best"] == result["best"]
    report = _get(api, f"/api/v1/tune/studies/job-{job_id}/report")
    assert report.status_code == 200
    assert "Optimization history" in report.text
    assert "sandbox" in report.headers["content-security-policy"]


def test_submit_when_more_trials_than_the_cap_then_refused_before_queueing(api_with) -> None:
    with api_with(FFE__TUNE__MAX_TRIALS="10") as api:
        response = api.client.post(
            "/api/v1/tune", json={**STUDY, "trials": 11}, headers=api.headers("trader")
        )
        listed = _get(api, "/api/v1/jobs").json()

    assert response.status_code == 422
    assert "at most 10 trials" in response.json()["detail"]
    assert listed["total"] == 0


def test_submit_when_bad_range_or_parameter_then_422_naming_it(api) -> None:
    trader = api.headers("trader")
    backwards = {**STUDY, "params": {"fast": "30..5"}}
    unknown = {**STUDY, "params": {"fsat": "5..30"}}

    assert "must go up" in api.client.post("/api/v1/tune", json=backwards, headers=trader).text
    answer = api.client.post("/api/v1/tune", json=unknown, headers=trader)
    assert answer.status_code == 422
    assert "no parameter fsat" in answer.json()["detail"]


def test_show_when_no_such_study_then_404_naming_those_there_are(api) -> None:
    response = _get(api, "/api/v1/tune/studies/nothing-here")

    assert response.status_code == 404
    assert "no study named 'nothing-here'" in response.json()["detail"]
