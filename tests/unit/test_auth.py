"""Authentication: tokens, passwords, the cache, the failure limit (SECURITY.md §6, 29-34)."""

from __future__ import annotations

import base64
import datetime
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from minirepo import auth, credentials, db, models
from minirepo import limiter as limiter_module
from minirepo.app import create_app
from minirepo.auth import Authenticator, parse_basic
from minirepo.config import Settings
from minirepo.errors import TooManyRequests, Unauthorized
from minirepo.services import accounts
from tests.conftest import ADMIN_PASSWORD, basic, post_upload, token_auth
from tests.helpers.serverproc import FAST_HASH

ALICE_PASSWORD = "alice-password-1"
BOB_PASSWORD = "bob-password-1"
REALM = 'Basic realm="minirepo"'
PRIVATE_URL = "/simple/"


@pytest.fixture
def private_settings(tmp_path: Path) -> Settings:
    return Settings(
        data=tmp_path / "private",
        password_hash=FAST_HASH,
        read="authenticated",
        threads=1,
        explicit=frozenset({"read"}),  # `read` shapes the default repository only when set
    )


@pytest.fixture
def private_app(private_settings: Settings) -> Iterator[Flask]:
    app = create_app(private_settings)
    database = app.extensions["minirepo"].folder.database
    with database.activated():
        accounts.add_user("alice", ALICE_PASSWORD, method=FAST_HASH)
        accounts.add_user("bob", BOB_PASSWORD, method=FAST_HASH)
        yield app
    database.close()


@pytest.fixture
def pclient(private_app: Flask) -> FlaskClient:
    return private_app.test_client()


@pytest.fixture
def alice_token(private_app: Flask) -> str:
    return accounts.create_token("alice", permission="read").secret


@pytest.fixture
def kdf_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every run of werkzeug's verifier, recorded by the hash it ran against."""
    calls: list[str] = []
    real = credentials.check_password_hash

    def counting(stored: str, password: str) -> bool:
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(credentials, "check_password_hash", counting)
    return calls


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Move the limiter's (wall) and the cache's (monotonic) clocks forward without sleeping."""
    offset = [0.0]
    real_monotonic, real_time = auth.time.monotonic, auth.time.time
    monkeypatch.setattr(auth.time, "monotonic", lambda: real_monotonic() + offset[0])
    monkeypatch.setattr(auth.time, "time", lambda: real_time() + offset[0])
    return offset


def get(
    client: FlaskClient, headers: dict[str, str] | None = None, addr: str = "10.0.0.1"
) -> TestResponse:
    return client.get(PRIVATE_URL, headers=headers or {}, environ_base={"REMOTE_ADDR": addr})


def raw_auth(value: str) -> dict[str, str]:
    return {"Authorization": value}


def assert_401(response: TestResponse) -> None:
    assert response.status_code == 401, response.status
    assert response.headers["WWW-Authenticate"] == REALM


# --- tokens -------------------------------------------------------------------------------


def test_token_as_token_user_and_as_owner_name(pclient: FlaskClient, alice_token: str) -> None:
    assert get(pclient, token_auth(alice_token)).status_code == 200
    assert get(pclient, basic("alice", alice_token)).status_code == 200


@pytest.mark.parametrize("user", ["bob", "nobody", "Alice", ""])
def test_token_with_another_user_name_is_refused(
    pclient: FlaskClient, alice_token: str, user: str
) -> None:
    assert_401(get(pclient, basic(user, alice_token)))


def test_anonymous_and_empty_password_get_401_with_challenge(pclient: FlaskClient) -> None:
    assert_401(get(pclient))
    # uv sends `__token__:` with no password before it asks the keyring: anonymous, 401
    assert_401(get(pclient, basic("__token__", "")))
    assert_401(get(pclient, basic("alice", "")))


def test_empty_password_on_a_public_repository_is_anonymous(
    client: FlaskClient, admin: str
) -> None:
    assert client.get("/simple/", headers=basic("__token__", "")).status_code == 200


def test_revoked_token_fails_at_once(pclient: FlaskClient, alice_token: str) -> None:
    assert get(pclient, token_auth(alice_token)).status_code == 200
    accounts.revoke_token(alice_token[:11])
    assert_401(get(pclient, token_auth(alice_token)))


def test_expired_token(pclient: FlaskClient, alice_token: str) -> None:
    past = models.utcnow() - datetime.timedelta(seconds=1)
    models.Token.update(expires=past).execute()
    assert_401(get(pclient, token_auth(alice_token)))
    future = models.utcnow() + datetime.timedelta(days=1)
    models.Token.update(expires=future).execute()
    assert get(pclient, token_auth(alice_token)).status_code == 200


def test_disabled_user_token_and_password_fail(pclient: FlaskClient, alice_token: str) -> None:
    assert get(pclient, token_auth(alice_token)).status_code == 200
    assert get(pclient, basic("alice", ALICE_PASSWORD)).status_code == 200  # now cached
    accounts.set_disabled("alice", True)
    assert_401(get(pclient, token_auth(alice_token)))
    assert_401(get(pclient, basic("alice", ALICE_PASSWORD)))
    accounts.set_disabled("alice", False)
    assert get(pclient, basic("alice", ALICE_PASSWORD)).status_code == 200


def test_bad_tokens_all_look_alike(pclient: FlaskClient, alice_token: str) -> None:
    """Revoked, expired, truncated, padded, unknown: one answer, no existence leak."""
    unknown = accounts.create_token("bob", permission="read")
    accounts.revoke_token(unknown.prefix)
    answers = {
        "truncated": get(pclient, token_auth(alice_token[:-1])),
        "extended": get(pclient, token_auth(alice_token + "A")),
        "trailing space": get(pclient, token_auth(alice_token + " ")),
        "made up": get(pclient, token_auth("mr-" + "A" * 43)),
        "revoked": get(pclient, token_auth(unknown.secret)),
        "prefix only": get(pclient, token_auth(alice_token[:11])),
    }
    for response in answers.values():
        assert_401(response)
    assert len({(r.status, r.get_data(), tuple(r.headers)) for r in answers.values()}) == 1


def test_wrong_prefix_token_is_refused(pclient: FlaskClient, alice_token: str) -> None:
    body = alice_token.removeprefix("mr-")
    for secret in (body, "pypi-" + body, "MR-" + body, "mr_" + body, " " + alice_token):
        assert_401(get(pclient, token_auth(secret)))


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_token_with_trailing_newline_is_stripped(
    pclient: FlaskClient, alice_token: str, ending: str
) -> None:
    """A token pasted from a file keeps its newline; warehouse strips it, so do we."""
    assert get(pclient, token_auth(alice_token + ending)).status_code == 200


def test_token_last_used_is_recorded(pclient: FlaskClient, alice_token: str) -> None:
    assert models.Token.get().last_used is None
    assert get(pclient, token_auth(alice_token)).status_code == 200
    assert models.Token.get().last_used is not None


def test_token_project_scope_on_upload(client: FlaskClient, admin: str, wheel: Path) -> None:
    """Case 31: a token for project A may not upload project B; a read token may not upload."""
    accounts.add_user("carol", "carol-password-1", method=FAST_HASH)
    other = accounts.create_token("carol", projects=("other-project",))
    response = post_upload(client, other.secret, wheel)
    assert response.status_code == 403, response.status
    assert f"token {other.prefix} is scoped to project other-project" in response.status
    reader = accounts.create_token("carol", permission="read")
    response = post_upload(client, reader.secret, wheel)
    assert response.status_code == 403, response.status
    assert f"token {reader.prefix} is read-only" in response.status
    right = accounts.create_token("carol", projects=("Demo_Pkg",)).secret
    response = post_upload(client, right, wheel)
    assert response.status_code == 200, response.status


# --- passwords ------------------------------------------------------------------------------


def test_password_login(pclient: FlaskClient) -> None:
    assert get(pclient, basic("alice", ALICE_PASSWORD)).status_code == 200
    assert_401(get(pclient, basic("alice", ALICE_PASSWORD + "x")))
    # user names are matched exactly
    assert_401(get(pclient, basic("ALICE", ALICE_PASSWORD)))


def test_unknown_user_and_wrong_password_are_indistinguishable(
    pclient: FlaskClient, kdf_calls: list[str]
) -> None:
    """Case 30: same status, reason, body and headers, and the KDF runs for both."""
    unknown = get(pclient, basic("mallory", "some-password-1"))
    assert len(kdf_calls) == 1
    wrong = get(pclient, basic("alice", "some-password-1"))
    assert len(kdf_calls) == 2
    disabled_user = accounts.get_user("bob")
    disabled_user.disabled = True
    disabled_user.save()
    disabled = get(pclient, basic("bob", BOB_PASSWORD))
    assert len(kdf_calls) == 3
    for response in (unknown, wrong, disabled):
        assert_401(response)
    assert unknown.status == wrong.status == disabled.status
    assert unknown.get_data() == wrong.get_data() == disabled.get_data()
    assert list(unknown.headers) == list(wrong.headers) == list(disabled.headers)
    # the unknown user was checked against a hash of the configured method, not a shortcut
    assert kdf_calls[0].startswith("pbkdf2:sha256:1000$")


def test_success_is_cached_and_failure_is_not(pclient: FlaskClient, kdf_calls: list[str]) -> None:
    assert get(pclient, basic("alice", ALICE_PASSWORD)).status_code == 200
    assert len(kdf_calls) == 1
    for _ in range(3):
        assert get(pclient, basic("alice", ALICE_PASSWORD)).status_code == 200
    assert len(kdf_calls) == 1
    for _ in range(2):
        assert_401(get(pclient, basic("alice", "wrong-password")))
    assert len(kdf_calls) == 3


def test_cache_expires(pclient: FlaskClient, kdf_calls: list[str], clock: list[float]) -> None:
    assert get(pclient, basic("alice", ALICE_PASSWORD)).status_code == 200
    clock[0] += Settings().auth_cache_seconds + 1
    assert get(pclient, basic("alice", ALICE_PASSWORD)).status_code == 200
    assert len(kdf_calls) == 2


def test_password_change_invalidates_the_cache_at_once(pclient: FlaskClient) -> None:
    assert get(pclient, basic("alice", ALICE_PASSWORD)).status_code == 200
    accounts.set_password("alice", "new-password-1", method=FAST_HASH)
    assert_401(get(pclient, basic("alice", ALICE_PASSWORD)))
    assert get(pclient, basic("alice", "new-password-1")).status_code == 200


def test_lost_admin_right_counts_at_once(client: FlaskClient, admin: str) -> None:
    accounts.add_user("root2", ADMIN_PASSWORD, method=FAST_HASH, admin=True)
    headers = basic("root2", ADMIN_PASSWORD)
    assert client.get("/simple/", headers=headers).status_code == 200
    principal_admin = _principal(client, headers)
    assert principal_admin is not None
    assert principal_admin.is_admin
    with db.write_transaction():  # as every account change does: bump the auth counter
        models.User.update(is_admin=False).where(models.User.name == "root2").execute()
        models.bump_counter(models.AUTH_COUNTER)
    models.forget_counters()
    principal_user = _principal(client, headers)
    assert principal_user is not None
    assert not principal_user.is_admin


def _principal(client: FlaskClient, headers: dict[str, str]) -> auth.Principal | None:
    app = client.application
    with app.test_request_context("/simple/", headers=headers):
        return auth.current_principal()


@pytest.mark.parametrize(
    "foreign",
    [
        "$2y$05$" + "a" * 53,
        "$apr1$abcdefgh$" + "b" * 22,
        "md5$x$y",
        "{SHA}" + "c" * 28,
        "plain-text-password",
        "",
        "scrypt:32768:8:1$salt",
        "pbkdf2:sha256:notanumber$salt$00",
    ],
)
def test_foreign_hash_is_401_not_500(
    pclient: FlaskClient, kdf_calls: list[str], foreign: str
) -> None:
    """Case 34: hashes werkzeug cannot read fail the login, and cost the same KDF run."""
    models.User.update(password_hash=foreign).where(models.User.name == "alice").execute()
    for password in (ALICE_PASSWORD, foreign or "x", "a" * 100):
        assert_401(get(pclient, basic("alice", password)))
    assert len(kdf_calls) == 3


def test_huge_password_is_refused_without_a_kdf_run(
    pclient: FlaskClient, kdf_calls: list[str]
) -> None:
    """Case 33: a 1 MB password costs no KDF run (which is what would make it slow)."""
    for password in ("x" * 1024**2, "y" * (auth.MAX_PASSWORD_LENGTH + 1)):
        assert_401(get(pclient, basic("alice", password)))
        assert_401(get(pclient, basic("nobody", password)))
    assert_401(get(pclient, basic("u" * 10_000, ALICE_PASSWORD)))
    assert kdf_calls == []


@pytest.mark.parametrize(
    "header",
    [
        "Bearer x",
        "Bearer " + "mr-" + "A" * 43,
        "Token mr-abc",
        "Digest username=alice",
        "Basic !!!not-base64!!!",
        "Basic YWxpY2U6c",  # bad padding
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),  # not UTF-8
    ],
)
def test_malformed_headers_are_401(pclient: FlaskClient, header: str) -> None:
    assert_401(get(pclient, raw_auth(header)))


def test_basic_scheme_is_case_insensitive(pclient: FlaskClient) -> None:
    value = base64.b64encode(f"alice:{ALICE_PASSWORD}".encode()).decode()
    assert get(pclient, raw_auth(f"basic {value}")).status_code == 200
    assert get(pclient, raw_auth(f"BASIC  {value} ")).status_code == 200


def test_password_may_contain_colons(private_app: Flask, pclient: FlaskClient) -> None:
    accounts.add_user("dora", "pass:with:colons", method=FAST_HASH)
    assert get(pclient, basic("dora", "pass:with:colons")).status_code == 200


def test_parse_basic() -> None:
    encode = lambda text: "Basic " + base64.b64encode(text.encode()).decode()  # noqa: E731
    assert parse_basic(encode("a:b")) == ("a", "b")
    assert parse_basic(encode("a:b\n")) == ("a", "b")
    assert parse_basic(encode("a:")) is None
    assert parse_basic(encode("no-colon")) is None
    with pytest.raises(Unauthorized):
        parse_basic("Bearer x")


# --- failure limit --------------------------------------------------------------------------


LIMIT = Settings().login_failure_limit
ADDRESS_LIMIT = LIMIT * auth.ADDRESS_LIMIT_FACTOR


def fail_until_locked(
    client: FlaskClient, users: Callable[[int], str], addr: str, count: int = LIMIT
) -> None:
    for attempt in range(count):
        assert_401(get(client, basic(users(attempt), "wrong-password"), addr=addr))


def assert_429(response: TestResponse, window: int = 300) -> None:
    assert response.status_code == 429, response.status
    assert 0 < int(response.headers["Retry-After"]) <= window + 1


def test_lockout_for_one_user(pclient: FlaskClient, kdf_calls: list[str]) -> None:
    """Case 29: the 11th attempt from that address is 429, even with the right password."""
    fail_until_locked(pclient, lambda attempt: "alice", addr="10.0.0.9")
    calls = len(kdf_calls)
    assert_429(get(pclient, basic("alice", "wrong-password"), addr="10.0.0.9"))
    assert_429(get(pclient, basic("alice", ALICE_PASSWORD), addr="10.0.0.9"))
    assert len(kdf_calls) == calls  # a locked login costs no KDF run
    # other users from that address, and tokens, are not affected
    assert get(pclient, basic("bob", BOB_PASSWORD), addr="10.0.0.9").status_code == 200
    token = accounts.create_token("alice", permission="read").secret
    assert get(pclient, token_auth(token), addr="10.0.0.9").status_code == 200


def test_lockout_is_never_per_account_alone(pclient: FlaskClient) -> None:
    """Failures from one address cannot lock the account out from another machine."""
    fail_until_locked(pclient, lambda attempt: "alice", addr="10.0.0.9")
    assert_429(get(pclient, basic("alice", ALICE_PASSWORD), addr="10.0.0.9"))
    assert get(pclient, basic("alice", ALICE_PASSWORD), addr="10.1.0.1").status_code == 200
    assert_401(get(pclient, basic("alice", "wrong-password"), addr="10.1.0.2"))


def test_lockout_of_a_cached_login(pclient: FlaskClient) -> None:
    assert get(pclient, basic("alice", ALICE_PASSWORD), addr="10.2.0.1").status_code == 200
    fail_until_locked(pclient, lambda attempt: "alice", addr="10.2.0.1")
    assert_429(get(pclient, basic("alice", ALICE_PASSWORD), addr="10.2.0.1"))


def test_lockout_spread_across_users_from_one_address(pclient: FlaskClient) -> None:
    """An address is locked as a whole after 3x the per-account limit, spread over users."""
    fail_until_locked(pclient, lambda attempt: f"user{attempt}", "10.3.0.1", ADDRESS_LIMIT - 1)
    assert get(pclient, basic("alice", ALICE_PASSWORD), addr="10.3.0.1").status_code == 200
    assert_401(get(pclient, basic("user-last", "wrong-password"), addr="10.3.0.1"))
    assert_429(get(pclient, basic("bob", BOB_PASSWORD), addr="10.3.0.1"))
    assert_429(get(pclient, basic("someone-new", "x" * 10), addr="10.3.0.1"))
    # the same account from another address is fine
    assert get(pclient, basic("bob", BOB_PASSWORD), addr="10.3.0.2").status_code == 200


def test_refused_requests_are_not_counted(pclient: FlaskClient, clock: list[float]) -> None:
    """Retrying while locked does not extend the lock: it ends one window after the 10th."""
    fail_until_locked(pclient, lambda attempt: "alice", addr="10.4.0.1")
    clock[0] += 200
    for _ in range(20):
        assert_429(get(pclient, basic("alice", "wrong-password"), addr="10.4.0.1"))
    clock[0] += 101
    assert get(pclient, basic("alice", ALICE_PASSWORD), addr="10.4.0.1").status_code == 200


def test_lockout_limiter_forgets_old_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random user names cannot grow the limiter's table without bound."""
    monkeypatch.setattr(limiter_module, "MAX_LIMITER_KEYS", 50)
    limiter = limiter_module.FailureLimiter(limit=10, window=300)
    for number in range(500):
        assert limiter.record(f"user:{number}")  # each key's first failure in its window
    assert len(limiter._failures) <= 50
    assert not limiter.record("user:499")
    limiter.check("user:499", 10)  # recent keys are kept (two failures: not locked)
    with pytest.raises(TooManyRequests):
        limiter.check("user:499", 2)


def test_lockout_is_logged_once(pclient: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    """Case 29: one `locked out` log line when the limit is reached, not one per attempt."""
    caplog.set_level(logging.INFO, logger="minirepo")
    fail_until_locked(pclient, lambda attempt: "alice", addr="10.5.0.1")
    for _ in range(3):
        assert_429(get(pclient, basic("alice", "wrong-password"), addr="10.5.0.1"))
    locked = [record for record in caplog.records if "locked out" in record.getMessage()]
    assert len(locked) == 1, caplog.text
    assert locked[0].levelno == logging.WARNING


def test_authenticator_anonymous(private_app: Flask, private_settings: Settings) -> None:
    authenticator = Authenticator(private_settings, b"k" * 32)
    assert authenticator.authenticate(None, "127.0.0.1") is None
    assert authenticator.authenticate("", "127.0.0.1") is None
    principal = authenticator.authenticate(basic("alice", ALICE_PASSWORD)["Authorization"], "")
    assert principal is not None
    assert principal.name == "alice"


# --- logs -----------------------------------------------------------------------------------


def test_logs_never_hold_passwords_or_tokens(
    pclient: FlaskClient, alice_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SECURITY.md A17: grep everything logged for every secret that was sent."""
    caplog.set_level(logging.DEBUG)
    secrets = [ALICE_PASSWORD, alice_token, "wrong-password-xyz", "not-alice-token"]
    get(pclient, basic("alice", ALICE_PASSWORD))
    get(pclient, token_auth(alice_token))
    get(pclient, token_auth(alice_token[:-2]))
    get(pclient, basic("__token__", "mr-not-alice-token"))
    for _ in range(12):
        get(pclient, basic("alice", "wrong-password-xyz"), addr="10.9.0.1")
    accounts.revoke_token(alice_token[:11])
    get(pclient, token_auth(alice_token))
    assert "locked out" in caplog.text  # the lockout is logged: we did capture the log
    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    for secret in secrets:
        assert secret not in logged
        assert base64.b64encode(secret.encode()).decode()[:12] not in logged
    assert "Authorization" not in logged
