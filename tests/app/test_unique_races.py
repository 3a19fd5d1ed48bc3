"""Writers racing from two processes on one database: the unique constraint decides, and
the loser answers from the winner's rows, on SQLite and PostgreSQL alike.

Each "process" is an app of its own (its own `Database`, so its own writer lock and
connections) on one data folder and database, as two workers or two boxes are. Within
one app the writer lock orders every write; across two, only the database does, and on
PostgreSQL a failed statement ends the transaction it ran in.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import peewee
import pytest
from flask import Flask

from minirepo import models
from minirepo.app import create_app
from minirepo.db import write_transaction
from minirepo.errors import UserError
from minirepo.services import accounts, audit, groups, projects, repos
from minirepo.services.container import Services
from tests.conftest import basic
from tests.helpers.backends import BACKENDS, backend_settings, served
from tests.helpers.distfactory import Dist, make_wheel, upload_form
from tests.helpers.serverproc import FAST_HASH

PASSWORD = "a-password-1"
RACERS = 8  # per app
T = TypeVar("T")


@pytest.fixture(params=BACKENDS)
def two_apps(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Flask, Flask]]:
    settings = backend_settings(request, tmp_path)
    with served(settings) as first:
        accounts.add_user("alice", PASSWORD, method=FAST_HASH)
        accounts.add_user("bob", PASSWORD, method=FAST_HASH)
        repos.create("team")
        second = create_app(settings)
        services: Services = second.extensions["minirepo"]
        try:
            yield first, second
        finally:
            services.downloads.close()
            services.fetches.close()
            services.proxies.close()
            services.folder.database.close()


HOLD = 0.05  # seconds a writer keeps its transaction open after its insert


@pytest.fixture
def slow_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every audited write holds its transaction open a moment after its rows: the
    others check before it commits, as they may across processes, so the race is run,
    not left to chance."""
    record = audit.record

    def held(*args: Any, **kwargs: Any) -> None:
        record(*args, **kwargs)
        time.sleep(HOLD)

    monkeypatch.setattr(audit, "record", held)


def database_of(app: Flask) -> contextlib.AbstractContextManager[object]:
    services: Services = app.extensions["minirepo"]
    return services.folder.database.activated()


def at_once(apps: tuple[Flask, Flask], work: Callable[[Flask, int], T]) -> list[T]:
    """`work(app, n)` in RACERS threads per app, all released together."""
    ready = threading.Barrier(2 * RACERS)

    def run(n: int) -> T:
        app = apps[n % 2]
        with database_of(app):
            ready.wait(timeout=30)
            result = work(app, n)
        services: Services = app.extensions["minirepo"]
        services.folder.database.close()  # this thread's connection
        return result

    with concurrent.futures.ThreadPoolExecutor(2 * RACERS) as pool:
        return list(pool.map(run, range(2 * RACERS)))


def test_racing_uploads_of_one_filename(two_apps: tuple[Flask, Flask], tmp_path: Path) -> None:
    """Half send one wheel, half another with the same name, each half through both apps:
    one row; the winner's bytes 200 (stored, or the same bytes again), the others 409."""
    wheels = []
    for n in (0, 1):
        (tmp_path / f"v{n}").mkdir()
        wheels.append(make_wheel(tmp_path / f"v{n}", Dist("racer", "1.0", payload=f"X = {n}\n")))
    alice = basic("alice", PASSWORD)

    def variant(n: int) -> int:
        return (n // 2) % 2  # apps alternate with n, so each app sends both variants

    def upload(app: Flask, n: int) -> tuple[int, int]:
        response = app.test_client().post(
            "/main/",
            data=upload_form(wheels[variant(n)]),
            headers=alice,
            content_type="multipart/form-data",
        )
        return variant(n), response.status_code

    answers = at_once(two_apps, upload)
    with database_of(two_apps[0]):
        stored = list(models.File.select().where(models.File.filename == wheels[0].name))
    assert len(stored) == 1
    sums = [hashlib.sha256(wheel.read_bytes()).hexdigest() for wheel in wheels]
    winner = sums.index(stored[0].sha256)
    want = [(variant(n), 200 if variant(n) == winner else 409) for n in range(2 * RACERS)]
    assert answers == want


def test_racing_first_uploads_of_one_new_project(
    two_apps: tuple[Flask, Flask], tmp_path: Path
) -> None:
    """Different versions of a project nobody has uploaded yet: every upload stored, under
    one project row."""
    alice = basic("alice", PASSWORD)
    (tmp_path / "dists").mkdir()
    wheels = [make_wheel(tmp_path / "dists", Dist("newborn", f"1.{n}")) for n in range(2 * RACERS)]

    def upload(app: Flask, n: int) -> int:
        response = app.test_client().post(
            "/main/", data=upload_form(wheels[n]), headers=alice, content_type="multipart/form-data"
        )
        return response.status_code

    assert at_once(two_apps, upload) == [200] * (2 * RACERS)
    with database_of(two_apps[0]):
        assert models.Project.select().where(models.Project.normalized == "newborn").count() == 1
        assert models.File.select().count() == 2 * RACERS


@pytest.mark.usefixtures("slow_audit")
def test_racing_grants_of_one_pair(two_apps: tuple[Flask, Flask]) -> None:
    roles = ("reader", "uploader")
    at_once(two_apps, lambda app, n: repos.grant("bob", "team", roles[n % 2]))
    with database_of(two_apps[0]):
        granted = repos.grants("team")
    assert len(granted) == 1
    assert granted[0][:2] == ("team", "bob")


def test_racing_first_bumps_of_a_counter(two_apps: tuple[Flask, Flask]) -> None:
    def bump(app: Flask, n: int) -> None:
        with write_transaction():
            models.bump_counter("racing")
            time.sleep(HOLD)

    at_once(two_apps, bump)
    with database_of(two_apps[0]):
        assert models.Counter.get(models.Counter.name == "racing").value == 2 * RACERS


@pytest.mark.usefixtures("slow_audit")
def test_racing_accounts_of_one_name_in_any_case(two_apps: tuple[Flask, Flask]) -> None:
    """ "Racer", "racer", "RACER"... at once: one account, the others refused as taken."""
    spellings = ("Racer", "racer", "RACER", "rAcEr")

    def add(app: Flask, n: int) -> str:
        try:
            accounts.add_user(spellings[n % len(spellings)], PASSWORD, method=FAST_HASH)
        except UserError as exc:
            return exc.reason
        return "created"

    answers = at_once(two_apps, add)
    assert answers.count("created") == 1
    assert {answer for answer in answers if answer != "created"} <= {
        f"User {name!r} already exists" for name in spellings
    }
    with database_of(two_apps[0]):
        lower = peewee.fn.LOWER(models.User.name)
        assert models.User.select().where(lower == "racer").count() == 1


@pytest.mark.usefixtures("slow_audit")
def test_racing_maintainers_of_one_project(two_apps: tuple[Flask, Flask], tmp_path: Path) -> None:
    """One maintainer row; the others are told it is there."""
    (tmp_path / "dists").mkdir()
    wheel = make_wheel(tmp_path / "dists", Dist("shared-pkg", "1.0"))
    response = (
        two_apps[0]
        .test_client()
        .post(
            "/main/",
            data=upload_form(wheel),
            headers=basic("alice", PASSWORD),
            content_type="multipart/form-data",
        )
    )
    assert response.status_code == 200

    def add(app: Flask, n: int) -> str:
        try:
            projects.add_maintainer("main", "shared-pkg", "bob")
        except UserError as exc:
            return exc.reason
        return "added"

    answers = at_once(two_apps, add)
    assert sorted(set(answers)) == ["added", "bob already maintains shared-pkg"]
    assert answers.count("added") == 1


@pytest.mark.usefixtures("slow_audit")
def test_racing_tracks_of_one_name(two_apps: tuple[Flask, Flask]) -> None:
    with database_of(two_apps[0]):
        repos.create("grp", kind="group", members=["main", "team"])

    def track(app: Flask, n: int) -> None:
        groups.track(repos.get("grp"), "shared-pkg", actor="test")

    at_once(two_apps, track)
    with database_of(two_apps[0]):
        assert groups.tracked(repos.get("grp")) == ["shared-pkg"]
