"""Settings: defaults < minirepo.toml < MINIREPO_* < flags, and every bad value refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from minirepo import config
from minirepo.config import Settings, load
from minirepo.errors import UserError

EXAMPLE = Path(__file__).parents[2] / "minirepo.toml.example"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "minirepo.toml"
    path.write_text(text)
    return path


def test_defaults_are_safe() -> None:
    settings = load(None, {})
    assert settings == Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.read == "anonymous"
    assert settings.default_repository == "main"
    assert settings.data == Path("minirepo-data")
    assert settings.database_path == Path("minirepo-data/minirepo.sqlite3")
    assert settings.base_url == "http://127.0.0.1:8080/"


def test_example_file_is_valid_and_holds_the_defaults(tmp_path: Path) -> None:
    """Every commented line of minirepo.toml.example, uncommented, gives the defaults."""
    lines = [
        line.removeprefix("# ")
        for line in EXAMPLE.read_text().splitlines()
        if line.startswith("# ") and " = " in line and line[2:3].islower()
    ]
    table = "\n".join(lines)
    defaults = load(write(tmp_path, table), {})
    names = {line.split(" = ")[0] for line in lines}
    assert names == set(config.FIELDS)
    for name in names - {"data", "public_url"}:
        assert getattr(defaults, name) == getattr(Settings(), name), name


def test_toml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'data = "/srv/minirepo"\nport = 9000\nread = "authenticated"\n'
        "busy_timeout = 2\npage_cache_seconds = 0.5\nmax_upload_size = 1_000_000\n",
    )
    settings = load(path, {})
    assert settings.data == Path("/srv/minirepo")
    assert settings.port == 9000
    assert settings.read == "authenticated"
    assert settings.busy_timeout == 2.0
    assert settings.page_cache_seconds == 0.5
    assert settings.max_upload_size == 1_000_000
    assert settings.host == "127.0.0.1"


def test_environment_overrides_toml(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9000\nhost = "0.0.0.0"\n')
    env = {"MINIREPO_PORT": "9100", "MINIREPO_DATA": "/var/lib/x", "MINIREPO_BUSY_TIMEOUT": "1.5"}
    settings = load(path, env)
    assert settings.port == 9100
    assert settings.host == "0.0.0.0"  # noqa: S104
    assert settings.data == Path("/var/lib/x")
    assert settings.busy_timeout == 1.5


def test_flags_override_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 9000\n")
    env = {"MINIREPO_PORT": "9100", "MINIREPO_HOST": "10.0.0.1"}
    settings = load(path, env, {"port": 9200, "host": None, "data": tmp_path / "d"})
    assert settings.port == 9200
    assert settings.host == "10.0.0.1"  # None flags are ignored
    assert settings.data == tmp_path / "d"


def test_empty_environment_value_is_ignored() -> None:
    assert load(None, {"MINIREPO_PORT": ""}).port == 8080


def test_other_environment_variables_are_ignored() -> None:
    assert load(None, {"PORT": "1", "MINIREPO_NOT_A_SETTING": "x"}) == Settings()


def test_minirepo_config_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 9300\n")
    assert load(None, {"MINIREPO_CONFIG": str(path)}).port == 9300
    other = tmp_path / "other.toml"
    other.write_text("port = 9400\n")
    # an explicit path (the --config flag) wins over the variable
    assert load(other, {"MINIREPO_CONFIG": str(path)}).port == 9400


def test_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MINIREPO_DATA", str(tmp_path))
    monkeypatch.setenv("MINIREPO_READ", "authenticated")
    settings = config.from_environment({"port": 9500})
    assert settings.data == tmp_path
    assert settings.read == "authenticated"
    assert settings.port == 9500


def test_data_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load(None, {"MINIREPO_DATA": "~/repo"}).data == tmp_path / "repo"


def test_unknown_toml_key(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"Unknown setting.*colour"):
        load(write(tmp_path, 'colour = "blue"\n'), {})
    with pytest.raises(UserError, match=r"Unknown setting.*server"):
        load(write(tmp_path, "[server]\nport = 1\n"), {})


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Cannot read config file"):
        load(tmp_path / "absent.toml", {})
    with pytest.raises(UserError, match="Cannot read config file"):
        load(None, {"MINIREPO_CONFIG": str(tmp_path / "absent.toml")})
    with pytest.raises(UserError, match="not valid TOML"):
        load(write(tmp_path, "port = \n"), {})


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('port = "eighty"', "port"),
        ("port = 80.5", "port"),
        ("port = true", "port"),
        ("port = 0", "port"),
        ("port = 70000", "port"),
        ('host = ["a", "b"]', "host"),
        ('host = ""', "host"),
        ("host = 1", "host"),
        ("data = 5", "data"),
        ('read = "everyone"', "read"),
        ("read = true", "read"),
        ("threads = 0", "threads"),
        ("max_upload_size = -1", "max_upload_size"),
        ("connection_limit = 0", "connection_limit"),
        ("login_failure_limit = 0", "login_failure_limit"),
        ("login_failure_window = 0", "login_failure_window"),
        ("auth_cache_seconds = -1", "auth_cache_seconds"),
        ("busy_timeout = -1", "busy_timeout"),
        ("busy_timeout = nan", "busy_timeout"),
        ("busy_timeout = inf", "busy_timeout"),
        ('busy_timeout = "slow"', "busy_timeout"),
        ("page_cache_seconds = -0.5", "page_cache_seconds"),
        ('public_url = "box:8080"', "public_url"),
        ('default_repository = "simple"', "default_repository"),
        ('default_repository = "Main"', "default_repository"),
        ('default_repository = "a/b"', "default_repository"),
        ('log_level = "loud"', "log_level"),
        ('password_hash = "md5"', "password_hash"),
        ('password_hash = "plain"', "password_hash"),
        ('password_hash = "scrypt:1:2"', "password_hash"),
        ('password_hash = "scrypt:1000:8:1"', "password_hash"),
        ('password_hash = "pbkdf2:nohash:1000"', "password_hash"),
        ('password_hash = "pbkdf2:sha256:0"', "password_hash"),
        ('password_hash = "pbkdf2:sha256:many"', "password_hash"),
    ],
)
def test_bad_values(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load(write(tmp_path, toml + "\n"), {})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "80x"),
        ("PORT", "99999"),
        ("READ", "public"),
        ("THREADS", "-2"),
        ("BUSY_TIMEOUT", "nan"),
        ("PASSWORD_HASH", "bcrypt"),
    ],
)
def test_bad_environment_values(name: str, value: str) -> None:
    with pytest.raises(UserError, match=name.lower()):
        load(None, {f"MINIREPO_{name}": value})


@pytest.mark.parametrize("method", ["scrypt", "scrypt:16384:8:1", "pbkdf2", "pbkdf2:sha256:1000"])
def test_good_hash_methods(method: str) -> None:
    from werkzeug.security import generate_password_hash

    assert load(None, {"MINIREPO_PASSWORD_HASH": method}).password_hash == method
    generate_password_hash("x", method)  # and werkzeug agrees


@pytest.mark.parametrize("value", ["anonymous", "authenticated"])
def test_read_values(value: str) -> None:
    assert load(None, {"MINIREPO_READ": value}).read == value


def test_error_message_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load(write(tmp_path, "port = \n"), {})
    assert "\n" not in info.value.reason


def test_base_url() -> None:
    assert Settings(host="10.1.2.3", port=9000).base_url == "http://10.1.2.3:9000/"
    assert Settings(host="::1").base_url == "http://[::1]:8080/"
    assert Settings(public_url="https://pypi.lab.example").base_url == "https://pypi.lab.example/"
    assert Settings(public_url="http://box/pypi/", host="0.0.0.0").base_url == "http://box/pypi/"  # noqa: S104


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])  # noqa: S104
def test_base_url_of_a_wildcard_bind_names_this_machine(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "labbox")
    assert Settings(host=host, port=8080).base_url == "http://labbox:8080/"


def test_base_url_of_a_wildcard_bind_is_never_the_wildcard() -> None:
    url = Settings(host="0.0.0.0").base_url  # noqa: S104
    assert "0.0.0.0" not in url  # noqa: S104
    assert socket.gethostname() in url
