"""`minirepo setup-client` in-process: the files' contents, places and modes, the refusals,
and the question to the server (answered by a stub on loopback), with HOME and
XDG_CONFIG_HOME in tmp_path."""

from __future__ import annotations

import base64
import configparser
import http.server
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from click.testing import CliRunner, Result

from minirepo import clientconfig
from minirepo.cli import main
from minirepo.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

TOKEN = "mr-" + "A1b2C3d4" + "x" * 35
BASE = "http://box:8080/"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


class Run(Protocol):
    def __call__(self, *args: str, stdin: str | None = None, **env: str | None) -> Result: ...


@pytest.fixture
def run(home: Path) -> Run:
    """Run `minirepo setup-client ARGS` with this home and none of the variables that
    would hide the written files (a CI runner may set PIP_INDEX_URL)."""
    runner = CliRunner()
    env: dict[str, str | None] = dict.fromkeys(clientconfig.OVERRIDING_VARIABLES)
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg")})

    def invoke(*args: str, stdin: str | None = None, **extra: str | None) -> Result:
        return runner.invoke(
            main, ["setup-client", *args], input=stdin, env={**env, **extra}, catch_exceptions=False
        )

    return invoke


def pip_conf(home: Path) -> Path:
    return home / "xdg" / "pip" / "pip.conf"


def uv_toml(home: Path) -> Path:
    return home / "xdg" / "uv" / "uv.toml"


def pypirc(home: Path) -> Path:
    return home / ".pypirc"


def read_ini(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()  # what pip and twine read them with
    parser.read_string(path.read_text())
    return parser


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def test_with_a_token_each_client_gets_its_file_with_the_token_readable_by_the_user_only(
    run: Run, home: Path
) -> None:
    result = run(BASE, "--repo", "all", "--token-stdin", stdin=TOKEN + "\n")
    assert result.exit_code == 0, result.output

    pip = read_ini(pip_conf(home))
    assert pip.get("global", "index-url") == f"http://__token__:{TOKEN}@box:8080/all/simple/"
    assert pip.get("global", "trusted-host") == "box:8080"
    uv = tomllib.loads(uv_toml(home).read_text())
    assert uv == {
        "index": [
            {
                "name": "minirepo",
                "url": f"http://__token__:{TOKEN}@box:8080/all/simple/",
                "publish-url": f"http://__token__:{TOKEN}@box:8080/main/",
                "default": True,
            }
        ]
    }
    twine = read_ini(pypirc(home))
    assert twine.get("distutils", "index-servers").split() == ["minirepo"]
    assert dict(twine["minirepo"]) == {
        "repository": "http://box:8080/main/",
        "username": "__token__",
        "password": TOKEN,
    }
    for path in (pip_conf(home), uv_toml(home), pypirc(home)):
        assert mode(path) == 0o600, path
    assert mode(pip_conf(home).parent) == 0o700
    assert TOKEN not in result.output
    assert f"twine: wrote {pypirc(home)} (0600: it holds the token)" in result.stdout
    assert "poetry config http-basic.minirepo __token__\n" in result.stdout


def test_without_a_token_the_files_hold_no_credentials_and_keep_the_umask(
    run: Run, home: Path
) -> None:
    result = run(BASE, "--repo", "team", "--upload-repo", "team")
    assert result.exit_code == 0, result.output

    assert read_ini(pip_conf(home)).get("global", "index-url") == "http://box:8080/team/simple/"
    index = tomllib.loads(uv_toml(home).read_text())["index"][0]
    assert (index["url"], index["publish-url"]) == (
        "http://box:8080/team/simple/",
        "http://box:8080/team/",
    )
    twine = read_ini(pypirc(home))
    assert twine.get("minirepo", "repository") == "http://box:8080/team/"
    assert not twine.has_option("minirepo", "password")  # twine asks for it
    for path in (pip_conf(home), uv_toml(home), pypirc(home)):
        assert mode(path) == 0o666 & ~umask(), path
    assert "No token (--token-stdin)" in result.stdout


def test_uploads_go_to_the_setting_default_repository_unless_told(run: Run, home: Path) -> None:
    """Run with the server's settings (on the box), the upload default is its repository."""
    result = run(BASE, "--repo", "all", "--print", MINIREPO_DEFAULT_REPOSITORY="lab")
    assert "repository = http://box:8080/lab/\n" in result.stdout
    result = run(
        BASE, "--repo", "all", "--print", "--upload-repo", "team", MINIREPO_DEFAULT_REPOSITORY="lab"
    )
    assert "repository = http://box:8080/team/\n" in result.stdout


def test_https_needs_no_trusted_host_and_a_path_prefix_is_kept(run: Run, home: Path) -> None:
    assert run("https://example.org/pypi", "--repo", "main").exit_code == 0
    pip = read_ini(pip_conf(home))
    assert pip.get("global", "index-url") == "https://example.org/pypi/main/simple/"
    assert not pip.has_option("global", "trusted-host")
    assert read_ini(pypirc(home)).get("minirepo", "repository") == "https://example.org/pypi/main/"


def test_an_existing_file_is_refused_by_name_and_nothing_is_written(run: Run, home: Path) -> None:
    pypirc(home).parent.mkdir(parents=True)
    pypirc(home).write_text("[distutils]\nindex-servers = pypi\n")

    result = run(BASE, "--repo", "all", "--token-stdin", stdin=TOKEN + "\n")

    assert result.exit_code == 1
    assert str(pypirc(home)) in result.stderr
    assert "--force" in result.stderr
    assert pypirc(home).read_text() == "[distutils]\nindex-servers = pypi\n"
    assert not pip_conf(home).exists()
    assert not uv_toml(home).exists()


def test_force_replaces_every_file_and_a_replaced_file_is_0600_too(run: Run, home: Path) -> None:
    assert run(BASE, "--repo", "all").exit_code == 0
    pypirc(home).chmod(0o644)

    refused = run(BASE, "--repo", "all", "--token-stdin", stdin=TOKEN + "\n")
    assert refused.exit_code == 1
    for path in (pip_conf(home), uv_toml(home), pypirc(home)):
        assert str(path) in refused.stderr

    result = run(BASE, "--repo", "all", "--token-stdin", "--force", stdin=TOKEN + "\n")
    assert result.exit_code == 0, result.output
    assert read_ini(pypirc(home)).get("minirepo", "password") == TOKEN
    for path in (pip_conf(home), uv_toml(home), pypirc(home)):
        assert mode(path) == 0o600, path
    assert not [p for p in pip_conf(home).parent.iterdir() if p.name.endswith(".tmp")]


def test_print_writes_nothing_and_masks_the_token_unless_asked(run: Run, home: Path) -> None:
    result = run(BASE, "--repo", "all", "--token-stdin", "--print", stdin=TOKEN + "\n")
    assert result.exit_code == 0, result.output
    assert not home.exists()
    assert TOKEN not in result.output
    assert f"# pip: {pip_conf(home)} (mode 0600)\n" in result.stdout
    assert "index-url = http://__token__:mr-A1b2C3d4***@box:8080/all/simple/" in result.stdout
    assert "password = mr-A1b2C3d4***\n" in result.stdout

    shown = run(BASE, "--repo", "all", "--token-stdin", "--print", "--show-token", stdin=TOKEN)
    assert shown.exit_code == 0, shown.output
    assert f"password = {TOKEN}\n" in shown.stdout
    assert not home.exists()

    assert run(BASE, "--show-token").exit_code == 2  # a usage error: only with --print


def test_print_says_which_files_exist(run: Run, home: Path) -> None:
    uv_toml(home).parent.mkdir(parents=True)
    uv_toml(home).write_text("")
    result = run(BASE, "--repo", "all", "--print")
    assert f"# uv: {uv_toml(home)} (exists: --force replaces it)\n" in result.stdout
    assert f"# pip: {pip_conf(home)}\n" in result.stdout


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("box:8080", "not an http(s) URL"),
        ("ftp://box/", "not an http(s) URL"),
        ("http://box:99999/", "not an http(s) URL"),
        (f"http://__token__:{TOKEN}@box:8080/", "no credentials in the URL"),
        ("http://box:8080/all/simple/", "is an index URL"),
        ("http://box:8080/?x=1", "without ?query"),
        ("http://box 8080/", "is not a URL"),
    ],
)
def test_a_url_that_is_not_a_server_base_is_refused(
    run: Run, home: Path, url: str, complaint: str
) -> None:
    result = run(url, "--repo", "all")
    assert result.exit_code == 1
    assert complaint in result.stderr
    assert TOKEN not in result.stderr
    assert not home.exists()


@pytest.mark.parametrize("token", ["hunter2hunter2", "mr-abc def", ""])
def test_something_else_than_a_token_on_stdin_is_refused(run: Run, home: Path, token: str) -> None:
    result = run(BASE, "--repo", "all", "--token-stdin", stdin=token + "\n")
    assert result.exit_code == 1
    assert "not a minirepo API token" in result.stderr
    assert not home.exists()


def test_a_bad_repository_name_is_refused(run: Run, home: Path) -> None:
    result = run(BASE, "--repo", "Team/x")
    assert result.exit_code == 1
    assert "Invalid repository name" in result.stderr
    assert run(BASE, "--repo", "all", "--upload-repo", "simple").exit_code == 1
    assert not home.exists()


def test_a_variable_that_hides_a_written_file_is_warned_about(run: Run, home: Path) -> None:
    result = run(BASE, "--repo", "all", PIP_CONFIG_FILE="/dev/null", UV_NO_CONFIG="1")
    assert result.exit_code == 0
    assert "warning: PIP_CONFIG_FILE is set: pip reads that file instead" in result.stderr
    assert "warning: UV_NO_CONFIG is set" in result.stderr


def test_xdg_config_home_unset_or_relative_means_dot_config(tmp_path: Path) -> None:
    for env in ({}, {"XDG_CONFIG_HOME": ""}, {"XDG_CONFIG_HOME": "rel/dir"}):
        assert clientconfig.pip_config_path(env, tmp_path, "linux") == (
            tmp_path / ".config" / "pip" / "pip.conf"
        )
        assert clientconfig.uv_config_path(env, tmp_path, "linux") == (
            tmp_path / ".config" / "uv" / "uv.toml"
        )


def test_pip_on_macos_prefers_application_support_when_it_exists(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert clientconfig.pip_config_path(env, tmp_path, "darwin") == (
        tmp_path / "xdg" / "pip" / "pip.conf"
    )
    support = tmp_path / "Library" / "Application Support" / "pip"
    support.mkdir(parents=True)
    assert clientconfig.pip_config_path(env, tmp_path, "darwin") == support / "pip.conf"
    assert clientconfig.uv_config_path(env, tmp_path, "darwin") == (
        tmp_path / "xdg" / "uv" / "uv.toml"
    )


def test_windows_files_go_to_appdata(tmp_path: Path) -> None:
    env = {"APPDATA": str(tmp_path / "Roaming"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert clientconfig.pip_config_path(env, tmp_path, "win32") == (
        tmp_path / "Roaming" / "pip" / "pip.ini"
    )
    assert clientconfig.uv_config_path(env, tmp_path, "win32") == (
        tmp_path / "Roaming" / "uv" / "uv.toml"
    )


def test_a_file_appearing_after_the_check_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "pip.conf"
    first = clientconfig.ClientFile("pip", path, "first\n", None)
    second = clientconfig.ClientFile("pip", path, "second\n", None)
    with pytest.raises(UserError, match="appeared meanwhile"):
        clientconfig.write([first, second], force=False)
    assert path.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pip.conf"]


# --- the question to the server -------------------------------------------------------------


class Stub:
    """An HTTP server on loopback answering every request with `status`; notes each one."""

    def __init__(self, status: int) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                stub.seen.append((self.command, self.path, self.headers.get("Authorization")))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


StartStub = Callable[[int], Stub]


@pytest.fixture
def stub() -> Iterator[StartStub]:
    stubs: list[Stub] = []

    def start(status: int) -> Stub:
        stubs.append(Stub(status))
        return stubs[-1]

    yield start
    for one in stubs:
        one.close()


def basic(token: str) -> str:
    return base64.b64encode(f"__token__:{token}".encode()).decode()


def index_url(home: Path) -> str:
    return read_ini(pip_conf(home)).get("global", "index-url")


def test_without_repo_the_group_is_used_when_the_server_serves_it(
    run: Run, home: Path, stub: StartStub
) -> None:
    server = stub(200)
    result = run(server.url, "--token-stdin", stdin=TOKEN + "\n")
    assert result.exit_code == 0, result.output
    assert server.seen == [("HEAD", "/all/simple/", "Basic " + basic(TOKEN))]
    assert index_url(home).endswith("/all/simple/")
    assert read_ini(pypirc(home)).get("minirepo", "repository") == f"{server.url}main/"


@pytest.mark.parametrize(("status", "token"), [(404, TOKEN), (401, None)])
def test_without_the_group_installs_come_from_main(
    run: Run, home: Path, stub: StartStub, status: int, token: str | None
) -> None:
    server = stub(status)
    args = [server.url] + (["--token-stdin"] if token else [])
    result = run(*args, stdin=f"{token}\n" if token else None)
    assert result.exit_code == 0, result.output
    assert server.seen[0][2] == (f"Basic {basic(token)}" if token else None)
    assert index_url(home).endswith("/main/simple/")


def test_a_refused_token_is_said_before_anything_is_written(
    run: Run, home: Path, stub: StartStub
) -> None:
    server = stub(401)
    result = run(server.url, "--token-stdin", stdin=TOKEN + "\n")
    assert result.exit_code == 1
    assert "refused the token (401" in result.stderr
    assert TOKEN not in result.stderr
    assert not home.exists()


def test_an_unexpected_answer_or_no_answer_is_refused_with_a_way_out(
    run: Run, home: Path, stub: StartStub
) -> None:
    server = stub(500)
    result = run(server.url)
    assert result.exit_code == 1
    assert "answered 500" in result.stderr
    assert "--repo" in result.stderr
    server.close()
    gone = run(server.url)
    assert gone.exit_code == 1
    assert "Cannot reach" in gone.stderr
    assert "--repo" in gone.stderr
    assert not home.exists()


def test_with_repo_the_server_is_not_asked(run: Run, home: Path, stub: StartStub) -> None:
    server = stub(500)
    assert run(server.url, "--repo", "main").exit_code == 0
    assert server.seen == []
