"""Group repositories (issue 15, hosted members): one URL, each name from one member.

Each test runs on SQLite and PostgreSQL, through the app as pip, uv and twine call it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import models
from minirepo.errors import UserError
from minirepo.services import groups, repos
from tests.conftest import basic
from tests.helpers.backends import BACKENDS, backend_settings, served
from tests.helpers.distfactory import Dist, make_wheel, upload_form
from tests.helpers.teamgroup import PASSWORD, add_team_and_group

ALICE = basic("alice", PASSWORD)
BOB = basic("bob", PASSWORD)


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """With `add_team_and_group`'s accounts, `team` and the group `all` = main, team
    (hosted members only: test_proxies.py has the first start's group)."""
    with served(backend_settings(request, tmp_path)) as flask_app:
        add_team_and_group()
        yield flask_app


def upload(client: FlaskClient, folder: Path, dist: Dist, headers: dict[str, str], url: str) -> int:
    folder.mkdir(exist_ok=True)
    form = upload_form(make_wheel(folder, dist))
    answer = client.post(url, data=form, headers=headers, content_type="multipart/form-data")
    return answer.status_code


def status(client: FlaskClient, path: str, headers: dict[str, str] | None = None) -> int:
    with client.get(path, headers=headers or {}) as answer:
        return answer.status_code


def versions(client: FlaskClient, project: str, headers: dict[str, str] | None = None) -> list[str]:
    answer = client.get(
        f"/all/simple/{project}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json", **(headers or {})},
    )
    assert answer.status_code == 200, answer.status
    return list(answer.json["versions"])  # type: ignore[index]


def test_uploads_to_a_group_land_in_its_upload_target(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    assert upload(client, tmp_path / "d", Dist("labtool", "1.0"), ALICE, "/all/") == 200
    assert client.get("/main/simple/labtool/").status_code == 200
    assert versions(client, "labtool") == ["1.0"]


def test_a_group_without_an_upload_target_refuses_uploads(app: Flask, tmp_path: Path) -> None:
    repos.update("all", upload_to="")
    answer = app.test_client().post(
        "/all/",
        data=upload_form(make_wheel(tmp_path, Dist("labtool", "1.0"))),
        headers=ALICE,
        content_type="multipart/form-data",
    )
    assert answer.status_code == 405
    assert "minirepo repo set all --upload-to MEMBER" in answer.status
    assert answer.headers["Allow"] == "GET, HEAD"


def test_each_name_comes_from_the_first_member_that_had_it(app: Flask, tmp_path: Path) -> None:
    """No merging: a later upload of the same name to another member never shows up."""
    client = app.test_client()
    dists = tmp_path / "d"
    assert upload(client, dists, Dist("internal-tool", "1.0"), ALICE, "/team/") == 200
    assert versions(client, "internal-tool", ALICE) == ["1.0"]
    # a higher version of the name in another member: the group keeps its origin
    assert upload(client, dists, Dist("internal-tool", "9.0"), BOB, "/main/") == 200
    assert versions(client, "internal-tool", ALICE) == ["1.0"]
    origins = groups.origins(repos.get("all"))
    assert [(item.project, item.member, item.actor) for item in origins] == [
        ("internal-tool", "team", "")
    ]


def test_the_first_member_wins_when_both_have_it(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    dists = tmp_path / "d"
    assert upload(client, dists, Dist("both", "2.0"), ALICE, "/team/") == 200
    assert upload(client, dists, Dist("both", "1.0"), ALICE, "/main/") == 200
    assert versions(client, "both", ALICE) == ["1.0"]  # main is listed first


def test_origin_set_moves_a_name_and_is_audited(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    dists = tmp_path / "d"
    assert upload(client, dists, Dist("moved", "1.0"), ALICE, "/main/") == 200
    assert upload(client, dists, Dist("moved", "2.0"), ALICE, "/team/") == 200
    assert versions(client, "moved", ALICE) == ["1.0"]
    groups.set_origin(repos.get("all"), "moved", "team", actor="carol")
    assert versions(client, "moved", ALICE) == ["2.0"]
    event = models.Event.select().where(models.Event.action == "origin set").get()
    assert (event.actor, event.repository, event.project, event.detail) == (
        "carol",
        "all",
        "moved",
        "team",
    )
    with pytest.raises(UserError, match="not a member"):
        groups.set_origin(repos.get("all"), "moved", "nosuch", actor="carol")


def test_a_private_member_is_never_fallen_through(app: Flask, tmp_path: Path) -> None:
    """The guard: a caller who may not read the winning member is refused there (401 to
    anonymous callers, 404 to others), even when another member has the name."""
    client = app.test_client()
    dists = tmp_path / "d"
    assert upload(client, dists, Dist("secret", "1.0"), ALICE, "/team/") == 200
    assert client.get("/all/simple/secret/").status_code == 401  # its origin: team
    assert upload(client, dists, Dist("secret", "9.0"), BOB, "/main/") == 200
    assert client.get("/all/simple/secret/").status_code == 401
    assert client.get("/all/simple/secret/", headers=BOB).status_code == 404
    assert versions(client, "secret", ALICE) == ["1.0"]
    path = "/all/files/secret/secret-1.0-py3-none-any.whl"
    assert status(client, path) == 401
    assert status(client, path, BOB) == 404
    assert status(client, path, ALICE) == 200


def test_files_and_metadata_resolve_like_the_page(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    wheel = make_wheel(tmp_path, Dist("labtool", "1.0"))
    assert upload(client, tmp_path / "d", Dist("labtool", "1.0"), ALICE, "/all/") == 200
    page = client.get("/all/simple/labtool/")
    href = page.get_data(as_text=True).split('href="')[1].split("#")[0]
    url = posixpath.normpath("/all/simple/labtool/" + href)
    assert url == "/all/files/labtool/labtool-1.0-py3-none-any.whl"
    with client.get(url) as download:
        assert download.status_code == 200
        assert download.data == wheel.read_bytes()
    assert status(client, url + ".metadata") == 200
    assert status(client, "/all/files/labtool/nothing-1.0-py3-none-any.whl") == 404


def test_the_root_page_lists_what_the_caller_may_read(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    dists = tmp_path / "d"
    assert upload(client, dists, Dist("public-one", "1.0"), ALICE, "/main/") == 200
    assert upload(client, dists, Dist("private-one", "1.0"), ALICE, "/team/") == 200
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}

    def names(headers: dict[str, str]) -> list[str]:
        answer = client.get("/all/simple/", headers={**accept, **headers})
        return [item["name"] for item in answer.json["projects"]]  # type: ignore[index]

    assert names({}) == ["public-one"]
    assert names(BOB) == ["public-one"]
    assert names(ALICE) == ["private-one", "public-one"]


def test_a_private_group_keeps_member_pages_private(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    assert upload(client, tmp_path / "d", Dist("labtool", "1.0"), ALICE, "/main/") == 200
    repos.update("all", read="authenticated", default_role="reader")
    assert client.get("/all/simple/labtool/").status_code == 401
    answer = client.get("/all/simple/labtool/", headers=BOB)
    assert answer.status_code == 200
    assert "private" in answer.headers["Cache-Control"]


@pytest.mark.parametrize(
    ("members", "upload_to", "reason"),
    [
        ([], None, "needs --members"),
        (["main", "main"], None, "twice"),
        (["nosuch"], None, "No repository named 'nosuch'"),
        (["all"], None, "is a group"),
        (["main"], "team", "--upload-to must be one of the hosted members"),
    ],
)
def test_bad_groups_are_refused(
    app: Flask, members: list[str], upload_to: str | None, reason: str
) -> None:
    with pytest.raises(UserError, match=reason):
        repos.create("other", kind="group", members=members, upload_to=upload_to)
    assert models.Repository.get_or_none(models.Repository.name == "other") is None


def test_members_are_hosted_repositories_only_for_their_kind(app: Flask) -> None:
    with pytest.raises(UserError, match="for groups"):
        repos.create("plain", members=["main"])
    with pytest.raises(UserError, match="not a group"):
        repos.update("main", members=["team"])


def test_deleting_a_member_leaves_the_group_working(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    assert upload(client, tmp_path / "d", Dist("labtool", "1.0"), ALICE, "/main/") == 200
    repos.create("extra")
    repos.update("all", members=["extra", "main", "team"], upload_to="extra")
    repos.delete("extra")
    assert groups.member_names(repos.get("all").id) == ["main", "team"]
    assert repos.get("all").upload_to is None
    assert versions(client, "labtool") == ["1.0"]


def test_a_member_that_leaves_takes_its_recorded_names_along(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    dists = tmp_path / "d"
    repos.create("lab", default_role="uploader")
    repos.update("all", members=["main", "lab", "team"])
    assert upload(client, dists, Dist("labtool", "1.0"), ALICE, "/lab/") == 200
    assert versions(client, "labtool") == ["1.0"]  # recorded: lab
    repos.update("all", members=["main", "team"])
    assert client.get("/all/simple/labtool/").status_code == 404
    assert groups.origins(repos.get("all")) == []
