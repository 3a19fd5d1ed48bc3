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
    """Only our prefix is ours; a lower-case look-alike is some other program's."""
    assert load(None, {"PORT": "1", "minirepo_port": "1", "XMINIREPO_PORT": "1"}) == Settings()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "MINIREPO_PROT",
            "Unknown environment variable MINIREPO_PROT (did you mean MINIREPO_PORT?)",
        ),
        (
            "MINIREPO_port",
            "Unknown environment variable MINIREPO_port (did you mean MINIREPO_PORT?)",
        ),
        ("MINIREPO_CONFG", "MINIREPO_CONFG (did you mean MINIREPO_CONFIG?)"),
        ("MINIREPO_DATA_DIR", "MINIREPO_DATA_DIR (did you mean MINIREPO_DATA?)"),
        ("MINIREPO_MAX_UPLOAD", "(did you mean MINIREPO_MAX_UPLOAD_SIZE?)"),
        ("MINIREPO_ADMIN_ACCESS", "(did you mean MINIREPO_ADMIN_PACKAGE_ACCESS?)"),
        ("MINIREPO_FUZZ_SCALE", "Unknown environment variable MINIREPO_FUZZ_SCALE"),
        ("MINIREPO_", "Unknown environment variable MINIREPO_"),
    ],
)
def test_unknown_environment_variable(name: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        load(None, {name: "9000"})
    assert message in info.value.reason
    assert "\n" not in info.value.reason


def test_unknown_environment_variable_without_a_close_name() -> None:
    with pytest.raises(UserError) as info:
        load(None, {"MINIREPO_TOKEN": "x"})
    assert info.value.reason == "Unknown environment variable MINIREPO_TOKEN"


def test_unknown_environment_variables_are_all_named() -> None:
    with pytest.raises(UserError) as info:
        load(None, {"MINIREPO_PROT": "1", "MINIREPO_TOKEN": "x", "MINIREPO_PORT": "9000"})
    assert info.value.reason == (
        "Unknown environment variables MINIREPO_PROT (did you mean MINIREPO_PORT?), MINIREPO_TOKEN"
    )


def test_unknown_environment_variable_with_an_empty_value_is_refused_too() -> None:
    """A typo is a typo whatever its value; only known names may be set empty."""
    with pytest.raises(UserError, match="MINIREPO_PROT"):
        load(None, {"MINIREPO_PROT": ""})


def test_unknown_environment_variable_is_refused_before_the_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Unknown environment variable"):
        load(tmp_path / "absent.toml", {"MINIREPO_PROT": "1"})


def test_every_known_environment_name_is_accepted(tmp_path: Path) -> None:
    """MINIREPO_CONFIG, MINIREPO_DATA and MINIREPO_<SETTING> for every setting."""
    environ = {f"MINIREPO_{name.upper()}": "" for name in config.FIELDS}
    assert "MINIREPO_DATA" in environ
    environ["MINIREPO_CONFIG"] = str(write(tmp_path, ""))
    assert load(None, environ) == Settings()  # empty values are ignored, as before


def test_from_environment_refuses_an_unknown_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIREPO_PROT", "9000")
    with pytest.raises(UserError, match="did you mean MINIREPO_PORT"):
        config.from_environment()


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


@pytest.mark.parametrize(
    ("toml", "suggestion"),
    [
        ("prot = 9000", "prot (did you mean port?)"),
        ("Port = 9000", "Port (did you mean port?)"),
        ("max_upload = 1", "max_upload (did you mean max_upload_size?)"),
        ("busy_timout = 1", "busy_timout (did you mean busy_timeout?)"),
        ("admin_access = true", "admin_access (did you mean admin_package_access?)"),
        ("databse = ''", "databse (did you mean database?)"),
    ],
)
def test_unknown_toml_key_did_you_mean(tmp_path: Path, toml: str, suggestion: str) -> None:
    path = write(tmp_path, toml + "\n")
    with pytest.raises(UserError) as info:
        load(path, {})
    assert info.value.reason == f"Unknown setting in {path}: {suggestion}"


def test_unknown_toml_keys_are_all_named(tmp_path: Path) -> None:
    path = write(tmp_path, 'prot = 1\ncolour = "blue"\n')
    with pytest.raises(UserError) as info:
        load(path, {})
    assert info.value.reason == (f"Unknown settings in {path}: colour, prot (did you mean port?)")


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


# --- sizes and durations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("max_upload_size", "10GiB", 10 * 1024**3),
        ("max_upload_size", "10 GiB", 10 * 1024**3),
        ("max_upload_size", "500MB", 500_000_000),
        ("max_upload_size", "1048576", 1024**2),  # a plain number is bytes, as before
        ("max_upload_size", "1_000_000", 1_000_000),
        ("max_metadata_size", "64KiB", 64 * 1024),
        ("max_metadata_size", "4mib", 4 * 1024**2),
        ("channel_timeout", "2m", 120),
        ("channel_timeout", "90", 90),  # a plain number is seconds, as before
        ("channel_timeout", "0.5m", 30),
        ("auth_cache_seconds", "1h", 3600),
        ("auth_cache_seconds", "0", 0),
        ("login_failure_window", "5m", 300),
        ("login_failure_window", "1d", 86400),
        ("busy_timeout", "1.5", 1.5),
        ("busy_timeout", "1m", 60.0),
        ("busy_timeout", "0.5s", 0.5),
        ("page_cache_seconds", "0.25", 0.25),
        ("page_cache_seconds", "2s", 2.0),
    ],
)
def test_sizes_and_durations_in_every_layer(
    tmp_path: Path, name: str, text: str, expected: float
) -> None:
    """The same text means the same in the environment, a flag and (with a unit) TOML."""
    layers = [load(None, {f"MINIREPO_{name.upper()}": text}), load(None, {}, {name: text})]
    if text[-1].isalpha():  # TOML takes a plain number unquoted: see the strict-type tests
        layers.append(load(write(tmp_path, f"{name} = {text!r}\n"), {}))
    for settings in layers:
        value = getattr(settings, name)
        assert value == expected
        assert type(value) is type(getattr(Settings(), name))


@pytest.mark.parametrize(
    ("toml", "name", "expected"),
    [
        ("max_upload_size = 1024", "max_upload_size", 1024),
        ("max_upload_size = 1e9", "max_upload_size", 1_000_000_000),
        ('max_upload_size = "2GB"', "max_upload_size", 2_000_000_000),
        ("channel_timeout = 60", "channel_timeout", 60),
        ("channel_timeout = 60.0", "channel_timeout", 60),
        ('channel_timeout = "1m"', "channel_timeout", 60),
        ("busy_timeout = 2", "busy_timeout", 2.0),
        ("busy_timeout = 0.5", "busy_timeout", 0.5),
        ('busy_timeout = "500s"', "busy_timeout", 500.0),
        ('page_cache_seconds = "1m"', "page_cache_seconds", 60.0),
    ],
)
def test_sizes_and_durations_in_toml(tmp_path: Path, toml: str, name: str, expected: float) -> None:
    settings = load(write(tmp_path, toml + "\n"), {})
    assert getattr(settings, name) == expected
    assert type(getattr(settings, name)) is type(getattr(Settings(), name))


def test_typed_flags_for_sizes_and_durations() -> None:
    """A flag may arrive already typed (click's `type=int`): a plain number keeps its unit."""
    settings = load(None, {}, {"max_upload_size": 2048, "channel_timeout": 30, "busy_timeout": 0.5})
    assert settings.max_upload_size == 2048
    assert settings.channel_timeout == 30
    assert settings.busy_timeout == 0.5


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("max_upload_size", "10G", "'10G' is not a size (unknown unit 'G'): use a whole number"),
        ("max_upload_size", "-1", "'-1' is not a size (negative)"),
        ("max_upload_size", "0.1KiB", "(not a whole number of bytes)"),
        ("max_upload_size", "1.5", "(not a whole number of bytes)"),
        ("max_upload_size", "nan", "'nan' is not a size"),
        ("max_metadata_size", "lots", "'lots' is not a size (not understood)"),
        ("channel_timeout", "1.5", "'1.5' is not a whole number of seconds"),
        ("channel_timeout", "1.5s", "'1.5s' is not a whole number of seconds"),
        ("channel_timeout", "2M", "'2M' is not a duration (unknown unit 'M'): use a number of"),
        ("auth_cache_seconds", "-1", "'-1' is not a duration (negative)"),
        ("login_failure_window", "soon", "'soon' is not a duration (not understood)"),
        ("busy_timeout", "inf", "'inf' is not a duration"),
        ("busy_timeout", "5 sec", "(unknown unit 'sec')"),
        ("page_cache_seconds", "-0.5", "(negative)"),
    ],
)
def test_bad_sizes_and_durations(name: str, text: str, reason: str) -> None:
    """The message keeps its form and adds the reason, with the accepted forms."""
    for environ, flags in (({f"MINIREPO_{name.upper()}": text}, None), ({}, {name: text})):
        with pytest.raises(UserError) as info:
            load(None, environ, flags)
        message = info.value.reason
        assert message.startswith(f"Setting {name!r} has an invalid value: ")
        assert reason in message
        assert "\n" not in message


def test_zero_is_refused_where_a_setting_must_be_positive() -> None:
    with pytest.raises(UserError, match="'max_upload_size' must be positive"):
        load(None, {"MINIREPO_MAX_UPLOAD_SIZE": "0GiB"})
    with pytest.raises(UserError, match="'channel_timeout' must be positive"):
        load(None, {"MINIREPO_CHANNEL_TIMEOUT": "0m"})


# --- strict TOML types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        ('port = "8093"', "'8093' is a string, not an integer"),
        ("port = 8093.0", "8093.0 is a float, not an integer"),
        ("port = true", "True is a boolean, not an integer"),
        ("threads = [4]", "[4] is an array, not an integer"),
        ('threads = "4"', "'4' is a string, not an integer"),
        ("host = 1", "1 is an integer, not a string"),
        ("host = 1979-05-27", "is a date or time, not a string"),
        ("log_level = {a = 1}", "{'a': 1} is a table, not a string"),
        ("data = 5", "5 is an integer, not a string"),
        ("data = true", "True is a boolean, not a string"),
        ("database = 1", "1 is an integer, not a string"),
        ("admin_package_access = 1", "1 is an integer, not a boolean"),
        ('admin_package_access = "true"', "'true' is a string, not a boolean"),
        ('admin_package_access = "yes"', "'yes' is a string, not a boolean"),
        ('max_upload_size = "1000"', "'1000' is a string without a unit; write it without quotes"),
        ('busy_timeout = "2.5"', "'2.5' is a string without a unit"),
        ('channel_timeout = ""', "'' is a string without a unit"),
        ("max_upload_size = true", "True is a boolean, not a number or a quantity"),
        ("busy_timeout = false", "False is a boolean, not a number or a quantity"),
        ("busy_timeout = [1]", "[1] is an array, not a number or a quantity"),
        ("max_upload_size = 1.5", "1.5 is not a size (not a whole number of bytes)"),
        ("channel_timeout = 1.5", "1.5 is not a whole number of seconds"),
    ],
)
def test_toml_value_of_the_wrong_type_is_refused(tmp_path: Path, toml: str, reason: str) -> None:
    with pytest.raises(UserError) as info:
        load(write(tmp_path, toml + "\n"), {})
    name = toml.split(" = ")[0]
    assert info.value.reason.startswith(f"Setting {name!r} has an invalid value: ")
    assert reason in info.value.reason


def test_environment_values_are_text_and_converted() -> None:
    settings = load(
        None,
        {
            "MINIREPO_PORT": " 8_093 ",
            "MINIREPO_THREADS": "4",
            "MINIREPO_DATA": "/srv/x",
            "MINIREPO_ADMIN_PACKAGE_ACCESS": "off",
        },
    )
    assert settings.port == 8093
    assert settings.threads == 4
    assert settings.data == Path("/srv/x")
    assert settings.admin_package_access is False


def test_every_layer_is_checked_even_when_overridden(tmp_path: Path) -> None:
    """A mistake is reported where it is, not once the override that hid it is removed."""
    path = write(tmp_path, 'port = "8093"\n')
    with pytest.raises(UserError, match="'port' has an invalid value"):
        load(path, {"MINIREPO_PORT": "9000"})
    with pytest.raises(UserError, match="'port' has an invalid value"):
        load(None, {"MINIREPO_PORT": "eighty"}, {"port": 9000})


# --- database and admin_package_access --------------------------------------------------------


def test_new_settings_defaults() -> None:
    settings = load(None, {})
    assert settings.database == ""
    assert settings.admin_package_access is True


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///minirepo.sqlite3",
        "sqlite:////var/lib/minirepo/index.sqlite3",
        "postgresql://minirepo@db:5432/minirepo",
        "postgresql://minirepo:secret@db/minirepo",
        "postgres://db/minirepo",
    ],
)
def test_database_urls(tmp_path: Path, url: str) -> None:
    assert load(None, {"MINIREPO_DATABASE": url}).database == url
    assert load(write(tmp_path, f"database = {url!r}\n"), {}).database == url
    assert load(None, {}, {"database": url}).database == url


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:hunter2@db/minirepo",
        "postgresq://user:hunter2@db/minirepo",
        "POSTGRESQL://user:hunter2@db/minirepo",
        "sqlite://relative.db",
        "sqlite:/x.db",
        "SQLITE:///x.db",
        "postgresql:/db",
        "/var/lib/minirepo/minirepo.sqlite3",
        "minirepo.sqlite3",
        "sqlite:///",
        "postgresql://",
        "postgres://",
        " postgresql://db/x",
    ],
)
def test_bad_database_urls(url: str) -> None:
    with pytest.raises(UserError) as info:
        load(None, {"MINIREPO_DATABASE": url})
    reason = info.value.reason
    assert reason.startswith("Setting 'database' must be empty")
    for form in ("sqlite:///", "postgresql://", "postgres://"):
        assert form in reason
    assert "hunter2" not in reason  # a URL may carry a password: never echoed


def test_database_url_is_not_in_the_repr() -> None:
    settings = Settings(database="postgresql://minirepo:hunter2@db/minirepo")
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("on", True),
        ("ON", True),
        (" on ", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("NO", False),
        ("off", False),
        ("Off", False),
    ],
)
def test_boolean_words_from_environment_and_flags(text: str, expected: bool) -> None:
    assert load(None, {"MINIREPO_ADMIN_PACKAGE_ACCESS": text}).admin_package_access is expected
    assert load(None, {}, {"admin_package_access": text}).admin_package_access is expected


@pytest.mark.parametrize("text", ["2", "-1", "y", "n", "t", "f", "enabled", "nope", "truee", "1.0"])
def test_bad_boolean_words(text: str) -> None:
    with pytest.raises(UserError) as info:
        load(None, {"MINIREPO_ADMIN_PACKAGE_ACCESS": text})
    reason = info.value.reason
    assert reason.startswith("Setting 'admin_package_access' has an invalid value: ")
    assert "true/1/yes/on/false/0/no/off" in reason


@pytest.mark.parametrize("value", [True, False])
def test_boolean_in_toml_and_as_a_typed_flag(tmp_path: Path, value: bool) -> None:
    toml = f"admin_package_access = {str(value).lower()}\n"
    assert load(write(tmp_path, toml), {}).admin_package_access is value
    assert load(None, {}, {"admin_package_access": value}).admin_package_access is value
