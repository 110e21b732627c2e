"""``ffe users``: what can be checked is checked before the password is asked."""

from __future__ import annotations

from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()
GOOD = "correct-horse\ncorrect-horse\n"


def _users() -> str:
    listed = runner.invoke(app, ["users", "list"])
    assert listed.exit_code == 0, listed.output
    return listed.stdout


def test_users_create_when_role_unknown_then_refused_before_the_password_is_asked():
    result = runner.invoke(app, ["users", "create", "alice", "--role", "boss"], input=GOOD)

    assert result.exit_code == 2
    assert "unknown role 'boss': use one of viewer, trader, admin" in result.output
    assert "Password" not in result.output
    assert "alice" not in _users()


def test_users_create_when_name_taken_then_refused_before_the_password_is_asked():
    made = runner.invoke(app, ["users", "create", "alice", "--role", "trader"], input=GOOD)
    assert made.exit_code == 0, made.output
    assert "Repeat for confirmation" in made.output  # asked twice, hidden

    again = runner.invoke(app, ["users", "create", "alice"], input=GOOD)

    assert again.exit_code == 2
    assert "user 'alice' exists: pick another name" in again.output
    assert "Password" not in again.output
    assert "trader" in next(line for line in _users().splitlines() if "alice" in line)


def test_users_create_when_password_short_then_refused_before_asking_it_again():
    result = runner.invoke(app, ["users", "create", "bob"], input="short\nshort\n")

    assert result.exit_code == 2
    assert "a password needs at least 8 characters" in result.output
    assert "Repeat for confirmation" not in result.output
    assert "bob" not in _users()


def test_users_create_when_passwords_differ_then_nothing_made():
    result = runner.invoke(app, ["users", "create", "bob"], input="correct-horse\nwrong-horse\n")

    assert result.exit_code == 2
    assert "the two passwords differ" in result.output
    assert "bob" not in _users()


def test_users_passwd_when_user_unknown_then_refused_before_the_password_is_asked():
    result = runner.invoke(app, ["users", "passwd", "nobody"], input=GOOD)

    assert result.exit_code == 2
    assert "no user 'nobody'" in result.output
    assert "Password" not in result.output


def test_users_passwd_when_given_on_the_command_line_then_changed_without_prompt():
    made = runner.invoke(app, ["users", "create", "carol", "--password", "correct-horse"])
    assert made.exit_code == 0, made.output

    changed = runner.invoke(app, ["users", "passwd", "carol", "--password", "battery-staple"])

    assert changed.exit_code == 0, changed.output
    assert "password of carol changed" in changed.output
    assert "Password" not in changed.output
