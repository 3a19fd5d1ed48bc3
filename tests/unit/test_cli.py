"""The `minirepo` command line, run in-process with click's CliRunner."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from minirepo import __version__, models
from minirepo.app import create_app
from minirepo.cli import main
from minirepo.config import Settings
from minirepo.credentials import NO_PASSWORD, token_digest, verify_password
from minirepo.services import accounts, datafolder
from tests.conftest import basic, post_upload, token_auth
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import FAST_HASH, TOKEN_RE, base_env

PASSWORD = "alice-password-1"


@dataclasses.dataclass
class Cli:
    runner: CliRunner
    data: Path
    env: dict[str, str | None]

    def __call__(self, *args: str, stdin: str | None = None, **env: str) -> Result:
        return self.runner.invoke(
            main, list(args), input=stdin, env={**self.env, **env}, catch_exceptions=False
        )

    def ok(self, *args: str, stdin: str | None = None, **env: str) -> Result:
        result = self(*args, stdin=stdin, **env)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def add_user(self, name: str, password: str = PASSWORD, *extra: str) -> Result:
        return self.ok("user", "add", name, "--password-stdin", *extra, stdin=password + "\n")

    def create_token(self, *args: str) -> str:
        return self.ok("token", "create", *args).stdout.splitlines()[-1]

    @property
    def settings(self) -> Settings:
        # No first-start proxy and group: these tests count and list repositories.
        return Settings(data=self.data, password_hash=FAST_HASH, upstream="")


def make_folder(settings: Settings) -> None:
    """What a first `minirepo serve` leaves: every other command refuses an empty place."""
    datafolder.open_for_serving(settings).database.close()


@pytest.fixture
def cli(runner: CliRunner, tmp_path: Path) -> Iterator[Cli]:
    """The CLI on a data folder made as `serve` makes it; its database is active for the
    test's own model queries (each command opens and activates its own)."""
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("MINIREPO_")}
    env.update(MINIREPO_DATA=str(tmp_path / "data"), MINIREPO_PASSWORD_HASH=FAST_HASH)
    cli = Cli(runner, tmp_path / "data", env)
    make_folder(cli.settings)
    folder = datafolder.open_data(cli.settings)
    with folder.database.activated():
        yield cli
    folder.database.close()


def assert_user_error(result: Result, *words: str) -> None:
    """Exit 1, one line on stderr naming the problem, nothing like a traceback."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("minirepo: ")
    assert "Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0]


def app_client(cli: Cli) -> FlaskClient:
    private = dataclasses.replace(cli.settings, read="authenticated", explicit=frozenset({"read"}))
    return create_app(private).test_client()


# --- user -----------------------------------------------------------------------------------


def test_user_add_from_stdin_and_list(cli: Cli) -> None:
    result = cli.add_user("alice")
    assert "Created user alice." in result.stdout
    cli.add_user("root", "root-password-1", "--admin")
    listing = cli.ok("user", "list").stdout.splitlines()
    assert [line.split("\t")[:2] for line in listing] == [["alice", "-"], ["root", "admin"]]
    user = models.User.get(models.User.name == "alice")
    assert verify_password(user.password_hash, PASSWORD)
    assert user.password_hash.startswith("pbkdf2:sha256:1000$")  # MINIREPO_PASSWORD_HASH
    assert PASSWORD not in result.stdout + result.stderr


def test_user_add_prompts_twice(cli: Cli) -> None:
    result = cli.ok("user", "add", "alice", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.stdout.count("Password") == 1
    assert "Repeat for confirmation" in result.stdout
    assert PASSWORD not in result.stdout  # hidden input
    assert verify_password(models.User.get().password_hash, PASSWORD)


def test_user_add_prompt_mismatch_asks_again(cli: Cli) -> None:
    result = cli.ok(
        "user", "add", "alice", stdin=f"one-password\nother-password\n{PASSWORD}\n{PASSWORD}\n"
    )
    assert "do not match" in result.stdout + result.stderr
    assert verify_password(models.User.get().password_hash, PASSWORD)


def test_user_add_prompt_without_input_aborts(cli: Cli) -> None:
    result = cli("user", "add", "alice", stdin="")
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_user_add_duplicate(cli: Cli) -> None:
    cli.add_user("alice")
    result = cli("user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert_user_error(result, "already exists")
    # names differing only in case would be confused in logs and listings
    result = cli("user", "add", "Alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert_user_error(result, "already exists")


@pytest.mark.parametrize(
    ("password", "word"),
    [("short", "too short"), ("", "too short"), ("x" * 5000, "too long"), ("mr-abcdefgh1", "mr-")],
)
def test_user_add_bad_password(cli: Cli, password: str, word: str) -> None:
    result = cli("user", "add", "alice", "--password-stdin", stdin=password + "\n")
    assert_user_error(result, word)
    assert models.User.select().count() == 0


@pytest.mark.parametrize("name", ["__token__", "bad name", "x-", ".x", "é", "a" * 101, "x/y"])
def test_user_add_bad_name(cli: Cli, name: str) -> None:
    result = cli("user", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    assert_user_error(result, "Invalid user name")


def test_user_passwd(cli: Cli) -> None:
    cli.add_user("alice")
    result = cli.ok("user", "passwd", "alice", "--password-stdin", stdin="new-password-1\n")
    assert "Password of alice changed." in result.stdout
    stored = models.User.get().password_hash
    assert verify_password(stored, "new-password-1")
    assert not verify_password(stored, PASSWORD)
    cli.ok("user", "passwd", "alice", stdin="third-password\nthird-password\n")
    assert verify_password(models.User.get().password_hash, "third-password")


def test_user_passwd_errors(cli: Cli) -> None:
    result = cli("user", "passwd", "nobody", "--password-stdin", stdin=PASSWORD + "\n")
    assert_user_error(result, "No user named 'nobody'")
    cli.add_user("alice")
    result = cli("user", "passwd", "alice", "--password-stdin", stdin="short\n")
    assert_user_error(result, "too short")
    assert verify_password(models.User.get().password_hash, PASSWORD)


def test_user_disable_stops_password_and_tokens(cli: Cli) -> None:
    cli.add_user("alice")
    token = cli.create_token("--user", "alice", "--permission", "read")
    client = app_client(cli)
    assert client.get("/simple/", headers=basic("alice", PASSWORD)).status_code == 200
    assert client.get("/simple/", headers=token_auth(token)).status_code == 200

    assert "User alice disabled." in cli.ok("user", "disable", "alice").stdout
    assert "disabled" in cli.ok("user", "list").stdout
    assert client.get("/simple/", headers=basic("alice", PASSWORD)).status_code == 401
    assert client.get("/simple/", headers=token_auth(token)).status_code == 401

    assert "User alice enabled." in cli.ok("user", "disable", "alice", "--enable").stdout
    assert client.get("/simple/", headers=basic("alice", PASSWORD)).status_code == 200
    assert_user_error(cli("user", "disable", "nobody"), "No user named")


# --- token ----------------------------------------------------------------------------------


def test_token_create_prints_the_token_alone_on_the_last_line(cli: Cli) -> None:
    cli.add_user("alice")
    result = cli.ok("token", "create", "--user", "alice")
    last = result.stdout.splitlines()[-1]
    assert last.startswith("mr-")
    assert TOKEN_RE.fullmatch(last)
    assert result.stdout.endswith(last + "\n")
    assert result.stderr == ""
    row = models.Token.get()
    assert row.permission == "upload"
    assert (row.expires, row.revoked) == (None, False)
    [info] = accounts.list_tokens()
    assert (info.repositories, info.projects, info.scope, info.state) == ([], [], "all", "active")
    assert last.startswith(row.prefix)
    assert row.prefix in result.stdout.splitlines()[0]
    client = app_client(cli)
    assert client.get("/simple/", headers=token_auth(last)).status_code == 200


def test_token_create_with_every_option(cli: Cli) -> None:
    cli.add_user("alice")
    token = cli.create_token(
        "--user",
        "alice",
        "--repo",
        "main",
        "--project",
        "Foo_Bar",
        "--project",
        "baz",
        "--permission",
        "read",
        "--expires",
        "30",
        "--description",
        "ci box",
    )
    row = models.Token.get()
    assert row.permission == "read"
    [info] = accounts.list_tokens()
    assert info.repositories == ["main"]
    assert info.projects == ["baz", "foo-bar"]  # normalized: what the permission rules compare
    assert info.scope == "repo:main,project:baz,project:foo-bar"
    assert row.description == "ci box"
    expected = models.utcnow() + datetime.timedelta(days=30)
    assert abs((row.expires - expected).total_seconds()) < 60
    assert row.secret_sha256 == token_digest(token)


@pytest.mark.parametrize(
    ("expires", "lifetime"),
    [
        ("90d", datetime.timedelta(days=90)),
        ("90", datetime.timedelta(days=90)),  # a plain number is days, as before
        ("12h", datetime.timedelta(hours=12)),
    ],
)
def test_token_create_expires_takes_durations(
    cli: Cli, expires: str, lifetime: datetime.timedelta
) -> None:
    cli.add_user("alice")
    cli.create_token("--user", "alice", "--expires", expires)
    expected = models.utcnow() + lifetime
    assert abs((models.Token.get().expires - expected).total_seconds()) < 60


def test_admin_token_of_a_non_admin_carries_only_that_users_rights(cli: Cli) -> None:
    """Admin-permission tokens are allowed for any account: all of its rights, no more."""
    cli.add_user("alice")
    cli.add_user("root", "root-password-1", "--admin")
    cli.ok("repo", "create", "team", "--read", "authenticated")
    alice = cli.create_token("--user", "alice", "--permission", "admin")
    root = cli.create_token("--user", "root", "--permission", "admin")
    client = create_app(cli.settings).test_client()
    assert client.get("/team/simple/", headers=token_auth(root)).status_code == 200
    assert client.get("/team/simple/", headers=token_auth(alice)).status_code == 404
    cli.ok("grant", "alice", "team", "reader")
    assert client.get("/team/simple/", headers=token_auth(alice)).status_code == 200


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("--user", "nobody"), "No user named 'nobody'"),
        (("--user", "alice", "--expires", "0"), "--expires"),
        (("--user", "alice", "--expires", "-3"), "--expires"),
        (("--user", "alice", "--expires", "999999999"), "--expires"),
        (("--user", "alice", "--expires", "soon"), "--expires"),
        (("--user", "alice", "--expires", "3y"), "--expires"),
        (("--user", "alice", "--repo", "nosuch"), "No repository named 'nosuch'"),
        (("--user", "alice", "--repo", "Bad Repo"), "Invalid repository name"),
        (("--user", "alice", "--project", "bad name!"), "Invalid project name"),
    ],
)
def test_token_create_errors(cli: Cli, args: tuple[str, ...], word: str) -> None:
    cli.add_user("alice")
    result = cli("token", "create", *args)
    assert_user_error(result, word)
    assert models.Token.select().count() == 0


def test_usage_errors_are_clicks_exit_2_without_traceback(cli: Cli) -> None:
    for args in (
        ("token", "create"),
        ("token", "create", "--user", "a", "--permission", "root"),
        ("user", "add"),
        ("no-such-command",),
    ):
        result = cli(*args)
        assert result.exit_code == 2, args
        assert "Error:" in result.stderr
        assert "Traceback" not in result.stdout + result.stderr


def test_only_the_sha256_of_a_token_is_stored(cli: Cli) -> None:
    cli.add_user("alice")
    tokens = [cli.create_token("--user", "alice") for _ in range(3)]
    stored = b"".join(path.read_bytes() for path in cli.data.glob("minirepo.sqlite3*"))
    assert stored
    for token in tokens:
        assert token.encode() not in stored
        assert token[11:].encode() not in stored  # not even the part after the prefix
        assert token_digest(token).encode() in stored
    assert PASSWORD.encode() not in stored


def test_token_list_shows_the_prefix_not_the_secret(cli: Cli) -> None:
    cli.add_user("alice")
    cli.add_user("bob")
    alice = cli.create_token("--user", "alice", "--description", "laptop", "--project", "p1")
    bob = cli.create_token("--user", "bob", "--permission", "read")
    listing = cli.ok("token", "list").stdout
    assert alice[:11] in listing
    assert bob[:11] in listing
    assert alice not in listing
    assert bob not in listing
    assert alice[11:15] not in listing
    assert "laptop" in listing
    assert "p1" in listing
    only_bob = cli.ok("token", "list", "--user", "bob").stdout
    assert bob[:11] in only_bob
    assert alice[:11] not in only_bob
    assert_user_error(cli("token", "list", "--user", "nobody"), "No user named")


def test_token_revoke(cli: Cli) -> None:
    cli.add_user("alice")
    token = cli.create_token("--user", "alice", "--permission", "read")
    other = cli.create_token("--user", "alice", "--permission", "read")
    client = app_client(cli)
    assert client.get("/simple/", headers=token_auth(token)).status_code == 200

    result = cli.ok("token", "revoke", token[:11])
    assert f"Revoked token {token[:11]}." in result.stdout
    assert client.get("/simple/", headers=token_auth(token)).status_code == 401
    assert client.get("/simple/", headers=token_auth(other)).status_code == 200
    assert "revoked" in cli.ok("token", "list").stdout

    assert_user_error(cli("token", "revoke", token[:11]), "already revoked")
    assert_user_error(cli("token", "revoke", "mr-"), "prefix")
    assert_user_error(cli("token", "revoke", "abcdefghijk"), "prefix")
    # a whole leaked token works too
    cli.ok("token", "revoke", other)
    assert client.get("/simple/", headers=token_auth(other)).status_code == 401


def test_token_list_columns(cli: Cli) -> None:
    cli.add_user("alice")
    token = cli.create_token(
        "--user", "alice", "--repo", "main", "--project", "P1", "--expires", "1d"
    )
    cli.ok("token", "revoke", token[:11])
    [line] = cli.ok("token", "list").stdout.splitlines()
    fields = line.split("\t")
    row = models.Token.get()
    assert fields[:6] == [
        str(row.id),
        token[:11],
        "alice",
        "upload",
        "repo:main,project:p1",
        "revoked",
    ]
    assert fields[6].startswith("expires 20")
    assert fields[7] == "last used never"


def test_token_revoke_by_id_and_a_shared_prefix(cli: Cli) -> None:
    cli.add_user("alice")
    cli.create_token("--user", "alice")
    cli.create_token("--user", "alice")
    first, second = models.Token.select().order_by(models.Token.id)
    models.Token.update(prefix=first.prefix).where(models.Token.id == second.id).execute()
    assert_user_error(cli("token", "revoke", first.prefix), "2 tokens", "by id")
    assert not models.Token.get_by_id(first.id).revoked
    result = cli.ok("token", "revoke", str(second.id))
    assert f"Revoked token {first.prefix}." in result.stdout
    assert models.Token.get_by_id(second.id).revoked
    assert not models.Token.get_by_id(first.id).revoked
    assert_user_error(cli("token", "revoke", "999"), "No token")


# --- repo, grant, revoke, user unlock, audit ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Bad Repo", "Invalid repository name"),
        ("Team", "Invalid repository name"),
        ("a" * 64, "Invalid repository name"),
        ("simple", "reserved"),
        ("files", "reserved"),
        ("main", "already exists"),
    ],
)
def test_repo_create_refuses_bad_names(cli: Cli, name: str, why: str) -> None:
    assert_user_error(cli("repo", "create", name), why)
    assert models.Repository.select().count() == 1  # main only


def test_repo_create_and_list(cli: Cli) -> None:
    result = cli.ok(
        "repo", "create", "team", "--read", "authenticated", "--default-role", "reader",
        "--overwrite", "allow", "--description", "the team's",
    )  # fmt: skip
    assert "Created repository team" in result.stdout
    assert "/team/simple/" in result.stdout
    header = ["name", "kind", "read", "overwrite", "default-role", "projects", "files", "bytes"]
    lines = [line.split("\t") for line in cli.ok("repo", "list").stdout.splitlines()]
    assert lines == [
        [*header, "members", "retention", "block"],
        ["main", "hosted", "anonymous", "never", "uploader", "0", "0", "0", "-", "-", "warn"],
        ["team", "hosted", "authenticated", "allow", "reader", "0", "0", "0", "-", "-", "warn"],
    ]
    cli.ok("repo", "create", "plain")
    listed = cli.ok("repo", "list").stdout
    assert "plain\thosted\tanonymous\tnever\tnone\t0\t0\t0\t-\t-\twarn" in listed


def test_repo_set_changes_only_what_is_given(cli: Cli) -> None:
    cli.ok("repo", "create", "team", "--read", "authenticated")
    result = cli.ok("repo", "set", "team", "--overwrite", "allow")
    assert "Updated repository team." in result.stdout
    row = models.Repository.get(models.Repository.name == "team")
    assert (row.read, row.overwrite, row.default_role) == ("authenticated", "allow", "none")
    assert_user_error(cli("repo", "set", "nosuch", "--read", "anonymous"), "No repository named")
    assert cli("repo", "set", "team", "--read", "everyone").exit_code == 2  # click's choice


def test_repo_delete_refuses_files_unless_forced(cli: Cli, tmp_path: Path) -> None:
    cli.add_user("root", "root-password-1", "--admin")
    token = cli.create_token("--user", "root")
    cli.ok("repo", "create", "team")
    client = create_app(cli.settings).test_client()
    wheel = make_wheel(tmp_path, Dist("demo-pkg", "1.0"))
    assert post_upload(client, token, wheel, url="/team/").status_code == 200

    assert_user_error(cli("repo", "delete", "team", "--yes"), "holds 1 file(s)", "--force")
    assert_user_error(cli("repo", "delete", "team", "--force"), "Nothing changed")  # no --yes
    assert models.Repository.select().where(models.Repository.name == "team").exists()
    result = cli.ok("repo", "delete", "team", "--force", "--yes")
    assert "Deleted repository team (1 file(s))." in result.stdout
    assert "team" not in cli.ok("repo", "list").stdout
    assert client.get("/team/simple/", headers=token_auth(token)).status_code == 404
    assert cli("repo", "delete", "main", "--yes").exit_code == 1  # the default repository


def test_repo_delete_without_files_needs_no_force(cli: Cli) -> None:
    cli.ok("repo", "create", "scratch")
    assert (
        "Deleted repository scratch (0 file(s))."
        in cli.ok("repo", "delete", "scratch", "--yes").stdout
    )
    assert_user_error(cli("repo", "delete", "scratch", "--yes"), "No repository named 'scratch'")


def test_grant_and_revoke(cli: Cli) -> None:
    cli.add_user("alice")
    cli.ok("repo", "create", "team", "--read", "authenticated")
    client = create_app(cli.settings).test_client()
    alice = basic("alice", PASSWORD)
    assert client.get("/team/simple/", headers=alice).status_code == 404  # no role: hidden
    assert "alice is now reader in team." in cli.ok("grant", "alice", "team", "reader").stdout
    assert client.get("/team/simple/", headers=alice).status_code == 200
    cli.ok("grant", "alice", "team", "owner")  # replaces the role
    grants = models.Grant.select(models.Grant.role).tuples()
    assert [role for (role,) in grants] == ["owner"]
    assert "no grant in team any more" in cli.ok("revoke", "alice", "team").stdout
    assert client.get("/team/simple/", headers=alice).status_code == 404
    assert_user_error(cli("revoke", "alice", "team"), "alice has no grant in team")
    assert_user_error(cli("grant", "nobody", "team", "reader"), "No user named 'nobody'")
    assert_user_error(cli("grant", "alice", "nosuch", "reader"), "No repository named 'nosuch'")
    assert cli("grant", "alice", "team", "admin").exit_code == 2  # not a role


def test_user_unlock_forgives_failed_logins(cli: Cli) -> None:
    cli.add_user("alice")
    client = create_app(cli.settings).test_client()

    def login(password: str) -> TestResponse:
        headers = basic("alice", password)
        return client.get("/simple/", headers=headers, environ_base={"REMOTE_ADDR": "10.7.0.1"})

    for _ in range(cli.settings.login_failure_limit):
        assert login("wrong-password").status_code == 401
    assert login(PASSWORD).status_code == 429
    assert "User alice unlocked." in cli.ok("user", "unlock", "alice").stdout
    assert login(PASSWORD).status_code == 200
    assert_user_error(cli("user", "unlock", "nobody"), "No user named 'nobody'")


def test_audit_newest_first_and_json(cli: Cli) -> None:
    cli.add_user("alice")
    cli.ok("repo", "create", "team")
    cli.ok("grant", "alice", "team", "uploader")
    lines = [line.split("\t") for line in cli.ok("audit").stdout.splitlines()]
    assert [line[2] for line in lines] == ["grant", "repo create", "user add"]
    assert lines[2][1] == "cli"
    assert lines[2][4] == "alice"  # the user add event names the user in `detail`
    assert lines[0][3:5] == ["team", "alice=uploader"]
    entries = [json.loads(line) for line in cli.ok("audit", "--json").stdout.splitlines()]
    assert [entry["action"] for entry in entries] == ["grant", "repo create", "user add"]
    assert entries[2] == {
        "time": entries[2]["time"],
        "actor": "cli",
        "action": "user add",
        "repository": "",
        "project": "",
        "filename": "",
        "remote_addr": "",
        "detail": "alice",
    }
    only_team = cli.ok("audit", "--repo", "team", "--json").stdout.splitlines()
    assert [json.loads(line)["action"] for line in only_team] == ["grant", "repo create"]


# --- every command --------------------------------------------------------------------------


def leaf_commands() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []

    def walk(prefix: str, command: click.Command) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found.append((prefix, command))

    walk("", main)
    return found


def all_commands() -> list[str]:
    names = [""]
    for name, _ in leaf_commands():
        words = name.split()
        names += [" ".join(words[:n]) for n in range(1, len(words) + 1)]
    return sorted(set(names))


@pytest.mark.parametrize("name", all_commands())
def test_every_help_has_an_example(cli: Cli, name: str) -> None:
    result = cli.ok(*name.split(), "--help")
    assert "Example" in result.stdout
    assert "minirepo " in result.stdout


@pytest.mark.parametrize(("name", "command"), leaf_commands())
def test_every_command_takes_config_and_data(name: str, command: click.Command) -> None:
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    assert {"--config", "--data"} <= options, name


def user_names(data: Path) -> list[str]:
    folder = datafolder.open_data(Settings(data=data, password_hash=FAST_HASH))
    try:
        with folder.database.activated():
            return [user.name for user in models.User.select().order_by(models.User.name)]
    finally:
        folder.database.close()


def test_data_flag_and_config_file(cli: Cli, tmp_path: Path) -> None:
    flagged = tmp_path / "flagged"
    configured = tmp_path / "configured"
    for data in (flagged, configured):
        make_folder(Settings(data=data, password_hash=FAST_HASH))
    cli.ok(
        "user", "add", "alice", "--data", str(flagged), "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert user_names(flagged) == ["alice"]
    assert user_names(cli.data) == []  # --data won over MINIREPO_DATA

    toml = tmp_path / "minirepo.toml"
    toml.write_text(f'data = "{configured}"\npassword_hash = "{FAST_HASH}"\n')
    env = {"MINIREPO_DATA": None}
    result = cli.runner.invoke(
        main,
        ["user", "add", "bob", "--config", str(toml), "--password-stdin"],
        input=PASSWORD + "\n",
        env={**cli.env, **env},
    )
    assert result.exit_code == 0, result.stderr
    assert user_names(configured) == ["bob"]
    listing = cli.ok("user", "list", "--config", str(toml), MINIREPO_DATA=str(configured))
    assert "bob" in listing.stdout
    # MINIREPO_CONFIG is read too
    result = cli.runner.invoke(
        main, ["user", "list"], env={**cli.env, **env, "MINIREPO_CONFIG": str(toml)}
    )
    assert "bob" in result.stdout


def test_bad_configuration_is_one_line(cli: Cli, tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("colour = 1\n")
    assert_user_error(cli("user", "list", "--config", str(toml)), "Unknown setting")
    assert_user_error(cli("user", "list", "--config", str(tmp_path / "absent.toml")), "Cannot read")
    assert_user_error(cli("user", "list", MINIREPO_READ="everyone"), "read")
    assert_user_error(cli("serve", "--port", "0"), "port")


def test_commands_refuse_a_place_with_no_data_folder(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only `serve` makes a data folder: a command run in the wrong directory makes none."""
    monkeypatch.chdir(tmp_path)  # the default data folder is ./minirepo-data
    env = {key: None for key in os.environ if key.startswith("MINIREPO_")}
    for args in (["user", "list"], ["token", "list"], ["repo", "list"], ["audit"]):
        result = runner.invoke(main, args, env=env)
        assert_user_error(result, "No minirepo data folder at", "minirepo serve")
    result = runner.invoke(main, ["user", "list", "--data", str(tmp_path / "absent")], env=env)
    assert_user_error(result, f"No minirepo data folder at {tmp_path / 'absent'}")
    assert list(tmp_path.iterdir()) == []


def test_data_folder_that_is_a_file(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_user_error(cli("user", "list", "--data", str(blocker / "sub")))


def test_version(cli: Cli) -> None:
    assert __version__ in cli.ok("--version").stdout


def test_serve_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = base_env({"MINIREPO_DATA": str(tmp_path / "d"), "MINIREPO_PASSWORD_HASH": FAST_HASH})
        result = subprocess.run(
            [sys.executable, "-m", "minirepo", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"minirepo: Address 127.0.0.1:{port} is already in use: "
        "stop the other server or pick another with --port\n"
    )
    # refused before anything was made: the next start still prints the admin's token
    assert not (tmp_path / "d").exists()


# --- the data folder the commands open ------------------------------------------------------


def main_read() -> str:
    return str(models.Repository.get(models.Repository.name == "main").read)


def test_cli_does_not_undo_the_servers_read_setting(cli: Cli) -> None:
    """A `user add` run without the server's configuration must not publish a private repo."""
    private = dataclasses.replace(cli.settings, read="authenticated", explicit=frozenset({"read"}))
    make_folder(private)
    cli.add_user("alice")
    cli.ok("user", "list")
    assert main_read() == "authenticated"
    # a server started without the setting keeps what is stored (fail closed) ...
    make_folder(cli.settings)
    assert main_read() == "authenticated"
    # ... and one whose configuration sets it applies it
    public = dataclasses.replace(cli.settings, read="anonymous", explicit=frozenset({"read"}))
    make_folder(public)
    assert main_read() == "anonymous"


def test_first_start_makes_the_admin_once(cli: Cli) -> None:
    first = datafolder.open_for_serving(cli.settings)
    with first.database.activated():
        token = datafolder.create_first_admin(cli.settings)
    first.database.close()
    assert token is not None
    assert TOKEN_RE.fullmatch(token)
    again = datafolder.open_for_serving(cli.settings)
    with again.database.activated():
        assert datafolder.create_first_admin(cli.settings) is None
    again.database.close()
    assert [user.name for user in models.User.select()] == ["admin"]
    assert models.User.get().is_admin
    assert models.Token.get().permission == "admin"
    assert again.secret == first.secret


def test_no_admin_when_accounts_exist(cli: Cli) -> None:
    cli.add_user("alice")
    assert datafolder.create_first_admin(cli.settings) is None
    assert [user.name for user in models.User.select()] == ["alice"]


def test_first_admin_has_no_password_until_passwd(cli: Cli) -> None:
    """No KDF run at first start: the admin logs in with the printed token only."""
    datafolder.create_first_admin(cli.settings)
    admin = models.User.get(models.User.name == "admin")
    assert admin.password_hash == NO_PASSWORD
    assert not verify_password(admin.password_hash, NO_PASSWORD)
    assert cli.ok("user", "list").stdout.split("\t")[1] == "admin,no-password"
    client = create_app(cli.settings).test_client()
    assert client.get("/simple/", headers=basic("admin", "!")).status_code == 401
    cli.ok("user", "passwd", "admin", "--password-stdin", stdin=f"{PASSWORD}\n")
    assert client.get("/simple/", headers=basic("admin", PASSWORD)).status_code == 200
    assert cli.ok("user", "list").stdout.split("\t")[1] == "admin"


def test_cli_never_makes_the_admin(cli: Cli) -> None:
    cli.ok("user", "list")
    assert models.User.select().count() == 0


def test_secret_is_private_and_repaired_when_damaged(cli: Cli) -> None:
    folder = datafolder.open_data(cli.settings)
    folder.database.close()
    path = cli.data / "secret"
    assert len(folder.secret) == datafolder.SECRET_BYTES
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_bytes(b"")  # a crash between create and write, with the old code
    reopened = datafolder.open_data(cli.settings)
    reopened.database.close()
    repaired = reopened.secret
    assert len(repaired) == datafolder.SECRET_BYTES
    assert repaired != folder.secret
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(cli.data.glob(".secret-*"))


# --- groups and origins ---------------------------------------------------------------------


def test_group_create_list_set_and_origins(cli: Cli) -> None:
    cli.ok("repo", "create", "team")
    created = cli.ok(
        "repo", "create", "all", "--kind", "group", "--members", "main, team", "--upload-to", "main"
    )
    assert "Created repository all" in created.stdout
    rows = {
        line.split("\t")[0]: line.split("\t") for line in cli.ok("repo", "list").stdout.splitlines()
    }
    assert rows["name"][8] == "members"
    assert rows["all"][1] == "group"
    assert rows["all"][8] == "main,team (uploads: main)"
    assert rows["main"][8] == "-"
    cli.ok("repo", "set", "all", "--members", "team,main", "--upload-to", "")
    rows = {
        line.split("\t")[0]: line.split("\t") for line in cli.ok("repo", "list").stdout.splitlines()
    }
    assert rows["all"][8] == "team,main"
    assert cli.ok("origin", "show", "all").stdout.splitlines() == ["project\tmember\tsince\tby"]
    assert (
        "now serves lab-tool from main"
        in cli.ok("origin", "set", "all", "Lab_Tool", "--member", "main").stdout
    )
    shown = cli.ok("origin", "show", "all", "lab-tool").stdout.splitlines()
    assert shown[1].split("\t")[:2] == ["lab-tool", "main"]
    assert shown[1].endswith("\tcli")


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("repo", "create", "g", "--kind", "group"), "needs --members"),
        (("repo", "create", "g", "--kind", "group", "--members", "nosuch"), "No repository"),
        (("repo", "create", "g", "--members", "main"), "for groups"),
        (("repo", "set", "main", "--members", "main"), "not a group"),
        (("origin", "set", "main", "x", "--member", "main"), "not a group"),
        (("origin", "show", "nosuch"), "No repository named"),
    ],
)
def test_group_errors(cli: Cli, args: tuple[str, ...], word: str) -> None:
    assert_user_error(cli(*args), word)
