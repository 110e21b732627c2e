"""`make deploy-check`'s runner: every check passes on the checkout, and a broken value fails
the check that owns it with a message that says what is wrong."""

from __future__ import annotations

from pathlib import Path

from tests.support.deploy import broken, run_check


def test_deploy_check_when_run_on_the_checkout_then_every_check_passes() -> None:
    done = run_check()

    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout


def test_image_check_when_the_dockerfile_runs_as_root_then_it_fails(tmp_path: Path) -> None:
    output = broken("image", "deploy/Dockerfile", "USER 10001:10001", "USER root", into=tmp_path)

    assert "DL3002" in output  # hadolint: the last USER should not be root


def test_deploy_check_when_asked_for_an_unknown_check_then_it_names_the_known_ones() -> None:
    done = run_check("kubernetes")

    assert done.returncode == 2
    assert "the checks are image" in done.stderr
