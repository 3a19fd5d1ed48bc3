"""Which settings file every command reads (--config, MINIREPO_CONFIG, ./minirepo.toml,
/etc/minirepo/minirepo.toml), where each value came from, and `minirepo config show`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from minirepo import config
from minirepo.cli import main
from minirepo.cli.config_cmd import redact
from minirepo.errors import UserError

SECRET = "pg-secret-Pw1"


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A current folder and a stand-in for /etc/minirepo/minirepo.toml, neither file made
    yet; no MINIREPO_* variable of the caller's leaks in."""
    cwd, system = tmp_path / "cwd", tmp_path / "etc" / "minirepo" / "minirepo.toml"
    cwd.mkdir()
    system.parent.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    # The real relative name again (tests/conftest.py points it away for other tests).
    monkeypatch.setattr(config, "LOCAL_CONFIG", Path("minirepo.toml"))
    monkeypatch.setattr(config, "SYSTEM_CONFIG", system)
    for key in [key for key in os.environ if key.startswith(config.ENV_PREFIX)]:
        monkeypatch.delenv(key)
    return cwd / "minirepo.toml", system


def test_search_order(
    places: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, system = places
    assert config.from_environment().config_file is None
    system.write_text("port = 9001\n")
    assert config.from_environment().port == 9001
    local.write_text("port = 9002\n")
    assert config.from_environment().port == 9002  # the current folder's first
    assert config.from_environment().config_file == Path("minirepo.toml")
    named = tmp_path / "named.toml"
    named.write_text("port = 9003\n")
    monkeypatch.setenv("MINIREPO_CONFIG", str(named))
    assert config.from_environment().port == 9003
    other = tmp_path / "other.toml"
    other.write_text("port = 9004\n")
    assert config.from_environment(path=other).port == 9004  # --config wins


def test_a_named_file_must_exist(places: tuple[Path, Path], tmp_path: Path) -> None:
    """A mistyped --config or MINIREPO_CONFIG never falls back to another file."""
    local, _ = places
    local.write_text("port = 9002\n")
    missing = tmp_path / "absent.toml"
    with pytest.raises(UserError, match=r"Cannot read config file .*absent\.toml"):
        config.from_environment(path=missing)
    with pytest.raises(UserError, match=r"Cannot read config file .*absent\.toml"):
        config.load(None, {"MINIREPO_CONFIG": str(missing)}, search=(local,))


def test_load_searches_only_when_asked(places: tuple[Path, Path]) -> None:
    """`load` itself looks nowhere, so tests and benchmarks see only what they pass."""
    local, system = places
    local.write_text("port = 9002\n")
    system.write_text("port = 9001\n")
    assert config.load(None, {}).port == 8080
    assert config.load(None, {}, search=(system, local)).port == 9001


def test_a_folder_we_may_not_look_into(
    places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """/etc/minirepo kept from other users is reported, not skipped (else the command would
    look for ./minirepo-data and say that is missing); an unreadable current folder
    (sudo -u minirepo from a private home) only has no ./minirepo.toml. Simulated: the
    suite may run as root, who may look into any folder."""
    _, system = places
    is_file = Path.is_file

    def forbidden(path: Path) -> bool:
        if path == system or path == config.LOCAL_CONFIG:
            raise PermissionError(13, "Permission denied", str(path))
        return is_file(path)

    monkeypatch.setattr(Path, "is_file", forbidden)
    assert config.find_config(None, {}, (config.LOCAL_CONFIG, system)) == system
    with pytest.raises(UserError, match="Cannot read config file"):
        config.from_environment()


def test_sources(places: tuple[Path, Path]) -> None:
    local, _ = places
    local.write_text('port = 9002\nhost = "0.0.0.0"\n')
    settings = config.load(
        None, {"MINIREPO_HOST": "10.0.0.5"}, {"data": "/srv/x", "port": None}, search=(local,)
    )
    assert settings.config_file == local
    assert settings.source("port") == f"file {local}"
    assert settings.source("host") == "env MINIREPO_HOST"
    assert settings.source("data") == "flag"
    assert settings.source("threads") == "default"
    assert settings.explicit == {"port", "host", "data"}
    # what records the layers is no setting: not in the file's names nor compared
    assert not {"sources", "config_file", "explicit"} & set(config.FIELDS)
    same = {"MINIREPO_HOST": "10.0.0.5", "MINIREPO_PORT": "9002", "MINIREPO_DATA": "/srv/x"}
    assert settings == config.load(None, same)


def show(*args: str, **env: str) -> Result:
    return CliRunner().invoke(main, ["config", "show", *args], env=env, catch_exceptions=False)


def test_config_show(places: tuple[Path, Path]) -> None:
    _, system = places
    system.write_text('port = 9001\nmax_upload_size = "2GiB"\noffline = true\n')
    url = f"postgresql://minirepo:{SECRET}@db.lab:5432/minirepo?sslmode=require"
    result = show("--data", "/srv/minirepo", MINIREPO_DATABASE=url, MINIREPO_THREADS="4")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"# settings file: {system}"
    rows = {line.split(" = ")[0]: line.split(" = ", 1)[1] for line in lines[1:]}
    assert list(rows) == list(config.FIELDS)  # every setting, in the file's order
    assert rows["port"].split() == ["9001", "#", "file", str(system)]
    assert rows["max_upload_size"].startswith(f"{2 * 1024**3} ")
    assert rows["offline"].startswith("true ")
    assert rows["threads"].split() == ["4", "#", "env", "MINIREPO_THREADS"]
    assert rows["data"].split() == ['"/srv/minirepo"', "#", "flag"]
    assert rows["host"].split() == ['"127.0.0.1"', "#", "default"]
    assert SECRET not in result.stdout
    assert '"postgresql://minirepo:***@db.lab:5432/minirepo?sslmode=require"' in rows["database"]


def test_config_show_without_a_file(places: tuple[Path, Path]) -> None:
    result = show()
    assert result.exit_code == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert header.startswith("# settings file: none")
    assert str(config.SYSTEM_CONFIG) in header
    assert "./minirepo.toml" in header


def test_config_show_refuses_what_every_command_refuses(places: tuple[Path, Path]) -> None:
    local, _ = places
    local.write_text("colour = 1\n")
    result = show()
    assert result.exit_code == 1
    assert result.stderr.startswith("minirepo: Unknown setting in minirepo.toml: colour")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p%40w@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://:pw@h/db", "postgresql://:***@h/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////var/lib/minirepo/x.sqlite3", "sqlite:////var/lib/minirepo/x.sqlite3"),
        ("https://u:pw@pypi.example/simple/", "https://u:***@pypi.example/simple/"),
        ("postgresql://u:pw@[bad/db", "postgresql://***"),
        ("", ""),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "pw" not in redact(url).replace("pypi", "")


def test_started_by_systemd() -> None:
    assert not config.started_by_systemd({})
    assert not config.started_by_systemd({"INVOCATION_ID": ""})
    assert config.started_by_systemd({"INVOCATION_ID": "0123abcd"})
    assert config.started_by_systemd({"JOURNAL_STREAM": "8:12345"})
