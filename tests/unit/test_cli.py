"""The `minirepo` command line, run in-process with click's CliRunner."""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from flask.testing import FlaskClient

from minirepo import __version__, auth, models
from minirepo.app import create_app
from minirepo.cli import main
from minirepo.config import Settings
from minirepo.services import accounts, maintenance
from tests.conftest import basic, token_auth
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
        return Settings(data=self.data, password_hash=FAST_HASH)


@pytest.fixture
def cli(runner: CliRunner, tmp_path: Path) -> Cli:
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("MINIREPO_")}
    env.update(MINIREPO_DATA=str(tmp_path / "data"), MINIREPO_PASSWORD_HASH=FAST_HASH)
    return Cli(runner, tmp_path / "data", env)


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
    return create_app(dataclasses.replace(cli.settings, read="authenticated")).test_client()


# --- user -----------------------------------------------------------------------------------


def test_user_add_from_stdin_and_list(cli: Cli) -> None:
    result = cli.add_user("alice")
    assert "Created user alice." in result.stdout
    cli.add_user("root", "root-password-1", "--admin")
    listing = cli.ok("user", "list").stdout.splitlines()
    assert [line.split("\t")[:2] for line in listing] == [["alice", "-"], ["root", "admin"]]
    user = models.User.get(models.User.name == "alice")
    assert auth.verify_password(user.password_hash, PASSWORD)
    assert user.password_hash.startswith("pbkdf2:sha256:1000$")  # MINIREPO_PASSWORD_HASH
    assert PASSWORD not in result.stdout + result.stderr


def test_user_add_prompts_twice(cli: Cli) -> None:
    result = cli.ok("user", "add", "alice", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.stdout.count("Password") == 1
    assert "Repeat for confirmation" in result.stdout
    assert PASSWORD not in result.stdout  # hidden input
    assert auth.verify_password(models.User.get().password_hash, PASSWORD)


def test_user_add_prompt_mismatch_asks_again(cli: Cli) -> None:
    result = cli.ok(
        "user", "add", "alice", stdin=f"one-password\nother-password\n{PASSWORD}\n{PASSWORD}\n"
    )
    assert "do not match" in result.stdout + result.stderr
    assert auth.verify_password(models.User.get().password_hash, PASSWORD)


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
    assert auth.verify_password(stored, "new-password-1")
    assert not auth.verify_password(stored, PASSWORD)
    cli.ok("user", "passwd", "alice", stdin="third-password\nthird-password\n")
    assert auth.verify_password(models.User.get().password_hash, "third-password")


def test_user_passwd_errors(cli: Cli) -> None:
    result = cli("user", "passwd", "nobody", "--password-stdin", stdin=PASSWORD + "\n")
    assert_user_error(result, "No user named 'nobody'")
    cli.add_user("alice")
    result = cli("user", "passwd", "alice", "--password-stdin", stdin="short\n")
    assert_user_error(result, "too short")
    assert auth.verify_password(models.User.get().password_hash, PASSWORD)


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
    assert (row.repositories, row.projects, row.expires, row.revoked) == ("", "", None, False)
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
    assert row.repositories == "main"
    assert row.projects == "baz,foo-bar"  # normalized: what may() compares
    assert row.description == "ci box"
    expected = models.utcnow() + datetime.timedelta(days=30)
    assert abs((row.expires - expected).total_seconds()) < 60
    assert row.secret_sha256 == auth.token_digest(token)


def test_admin_token_only_for_admins(cli: Cli) -> None:
    cli.add_user("alice")
    cli.add_user("root", "root-password-1", "--admin")
    result = cli("token", "create", "--user", "alice", "--permission", "admin")
    assert_user_error(result, "not an admin")
    assert TOKEN_RE.search(result.stdout) is None
    cli.create_token("--user", "root", "--permission", "admin")


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("--user", "nobody"), "No user named 'nobody'"),
        (("--user", "alice", "--expires", "0"), "--expires"),
        (("--user", "alice", "--expires", "-3"), "--expires"),
        (("--user", "alice", "--expires", "999999999"), "--expires"),
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
        ("token", "create", "--user", "a", "--expires", "soon"),
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
        assert auth.token_digest(token).encode() in stored
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
    assert "Revoked 1 token(s)." in result.stdout
    assert client.get("/simple/", headers=token_auth(token)).status_code == 401
    assert client.get("/simple/", headers=token_auth(other)).status_code == 200
    assert "revoked" in cli.ok("token", "list").stdout

    assert_user_error(cli("token", "revoke", token[:11]), "No active token")
    assert_user_error(cli("token", "revoke", "mr-"), "prefix")
    assert_user_error(cli("token", "revoke", "abcdefghijk"), "prefix")
    # a whole leaked token works too
    cli.ok("token", "revoke", other)
    assert client.get("/simple/", headers=token_auth(other)).status_code == 401


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


def test_data_flag_and_config_file(cli: Cli, tmp_path: Path) -> None:
    flagged = tmp_path / "flagged"
    cli.ok(
        "user", "add", "alice", "--data", str(flagged), "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert (flagged / "minirepo.sqlite3").exists()
    assert not cli.data.exists()  # --data won over MINIREPO_DATA

    configured = tmp_path / "configured"
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
    assert (configured / "minirepo.sqlite3").exists()
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
    assert result.stderr.strip().splitlines()[-1].startswith("minirepo: ")
    # the failed start made no admin, so the next start still prints the token
    maintenance.open_data(Settings(data=tmp_path / "d", password_hash=FAST_HASH))
    assert models.User.select().count() == 0


# --- the data folder the commands open ------------------------------------------------------


def test_cli_does_not_undo_the_servers_read_setting(cli: Cli) -> None:
    """A `user add` run without the server's configuration must not publish a private repo."""
    maintenance.open_data(dataclasses.replace(cli.settings, read="authenticated"), first_start=True)
    cli.add_user("alice")
    cli.ok("user", "list")
    assert models.Repository.get(models.Repository.name == "main").read == "authenticated"
    # the server applies its own setting when it starts
    maintenance.open_data(cli.settings, first_start=True)
    assert models.Repository.get(models.Repository.name == "main").read == "anonymous"


def test_first_start_makes_the_admin_once(cli: Cli) -> None:
    first = maintenance.open_data(cli.settings, first_start=True)
    token = maintenance.create_first_admin(cli.settings)
    assert token is not None
    assert TOKEN_RE.fullmatch(token)
    again = maintenance.open_data(cli.settings, first_start=True)
    assert maintenance.create_first_admin(cli.settings) is None
    assert [user.name for user in models.User.select()] == ["admin"]
    assert models.User.get().is_admin
    assert models.Token.get().permission == "admin"
    assert again.secret == first.secret


def test_no_admin_when_accounts_exist(cli: Cli) -> None:
    cli.add_user("alice")
    maintenance.open_data(cli.settings, first_start=True)
    assert maintenance.create_first_admin(cli.settings) is None


def test_first_admin_has_no_password_until_passwd(cli: Cli) -> None:
    """No KDF run at first start: the admin logs in with the printed token only."""
    maintenance.open_data(cli.settings, first_start=True)
    maintenance.create_first_admin(cli.settings)
    admin = models.User.get(models.User.name == "admin")
    assert admin.password_hash == accounts.NO_PASSWORD
    assert not auth.verify_password(admin.password_hash, accounts.NO_PASSWORD)
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
    folder = maintenance.open_data(cli.settings)
    path = cli.data / "secret"
    assert len(folder.secret) == maintenance.SECRET_BYTES
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_bytes(b"")  # a crash between create and write, with the old code
    repaired = maintenance.open_data(cli.settings).secret
    assert len(repaired) == maintenance.SECRET_BYTES
    assert repaired != folder.secret
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(cli.data.glob(".secret-*"))
