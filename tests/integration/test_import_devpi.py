"""From a real devpi-server to minirepo: users, indexes (with bases and acl_upload), uploads
by twine, a push and a docs upload through devpi's own API; then `devpi-export`,
`minirepo import devpi`, pip installs through the group made of an index's bases, and the
imported roles hold: an acl_upload user may publish to the mapped repository, another
devpi user may not. One devpi-server start."""

from __future__ import annotations

import datetime
import json
import zipfile
from pathlib import Path

import requests

from tests.helpers.clients import pip_install_into
from tests.helpers.devpirig import Devpi, export, running_devpi
from tests.helpers.distfactory import Dist, make_sdist, make_wheel
from tests.helpers.serverproc import running_server

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-1", "carol": "carol-password-1"}
JSON_PAGE = "application/vnd.pypi.simple.v1+json"


def fill_devpi(devpi: Devpi, dists: Path) -> None:
    """alice/dev (bases root/pypi; alice and bob upload), alice/stable (bases alice/dev;
    devpi-app 1.0 pushed there, docs included) and bob/priv (bob and carol upload)."""
    for name, password in PASSWORDS.items():
        devpi.create_user(name, password)
    alice, bob, carol = (
        ("alice", PASSWORDS["alice"]),
        ("bob", PASSWORDS["bob"]),
        ("carol", PASSWORDS["carol"]),
    )
    devpi.create_index(*alice, "dev", bases=["root/pypi"], acl_upload=["alice", "bob"])
    devpi.create_index(*alice, "stable", bases=["alice/dev"], volatile=False)
    devpi.create_index(*bob, "priv", acl_upload=["bob", "carol"])
    app_1 = Dist("devpi-app", "1.0", requires_dist=("devpi-lib>=1",))
    lib = make_wheel(dists, Dist("devpi-lib", "1.0"))
    uploads = [
        (alice, "alice/dev", [make_wheel(dists, app_1), make_sdist(dists, app_1), lib]),
        (bob, "alice/dev", [make_wheel(dists, Dist("devpi-app", "1.1"))]),
        (carol, "bob/priv", [make_wheel(dists, Dist("carol-tool", "0.1"))]),
    ]
    for user, index, files in uploads:
        result = devpi.twine(*user, index, files)
        assert result.returncode == 0, result.stdout + result.stderr
    docs = dists / "devpi_app-1.0.doc.zip"
    with zipfile.ZipFile(docs, "w") as archive:
        archive.writestr("index.html", "<h1>devpi-app</h1>")
    devpi.upload_docs(*alice, "alice/dev", "devpi-app", "1.0", docs)
    devpi.push(*alice, "alice/dev", "devpi-app", "1.0", "alice/stable")


def logged_time(dump: Path, index: str, filename: str) -> str:
    """The export's own record of when `filename` came into `index`, as PEP 700 text."""
    files = json.loads((dump / "dataindex.json").read_text())["indexes"][index]["files"]
    (entry,) = (f for f in files if f["relpath"].endswith("/" + filename))
    when = entry["log"][-1]["when"]
    moment = datetime.datetime(*when)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_import_a_real_devpi_export(tmp_path: Path, env: dict[str, str]) -> None:
    dists = tmp_path / "dists"
    dists.mkdir()
    with running_devpi(tmp_path / "devpi", "root-password-1", env) as devpi:
        fill_devpi(devpi, dists)
    dump = export(tmp_path / "devpi", tmp_path / "export")

    # No first-start PyPI proxy: the group must not stand on the network.
    settings = {"MINIREPO_PAGE_CACHE_SECONDS": "0"}
    with running_server(tmp_path / "minirepo", settings, serve_args=("--no-upstream",)) as server:
        out = server.cli("import", "devpi", str(dump)).stdout
        assert "alice/dev -> alice-dev (created): 4 imported" in out, out
        assert "skipped 1 docs zip(s)" in out
        assert "alice/stable -> alice-stable (created): 2 imported" in out
        assert "bob/priv -> bob-priv (created): 1 imported" in out
        assert "roles: alice owner, bob uploader" in out
        assert "Not imported: mirror root/pypi (https://pypi.org/simple/), so no group" in out
        assert (
            "Group alice-stable-all (created): alice/stable with its bases, alice-stable, " in out
        )
        assert "alice: devpi's argon2 hash" in out
        assert "Users: 4 created" in out  # root too

        # The group answers devpi-app from alice-stable (1.0, pushed) and its dependency
        # from alice-dev, as devpi's alice/stable did through its base.
        group = f"{server.url}/alice-stable-all/simple/"
        landed = pip_install_into(tmp_path / "target", group, "devpi-app", env)
        assert {"devpi_app-1.0.dist-info", "devpi_lib-1.0.dist-info"} <= landed

        page = requests.get(
            f"{server.url}/alice-dev/simple/devpi-app/", headers={"Accept": JSON_PAGE}, timeout=10
        ).json()
        times = {f["filename"]: f["upload-time"] for f in page["files"]}
        wheel = "devpi_app-1.1-py3-none-any.whl"
        assert times[wheel] == logged_time(dump, "alice/dev", wheel)
        shown = server.cli("project", "show", "alice-dev", "devpi-app").stdout
        assert "owner\talice" in shown
        assert "maintainers\tbob" in shown

        # Roles: bob (acl_upload of alice/dev) publishes a new version of alice's project;
        # carol (acl_upload of bob/priv only) may not.
        for name in ("bob", "carol"):
            server.cli("user", "passwd", name, "--password-stdin", stdin=PASSWORDS[name] + "\n")
        for name, ok in (("bob", True), ("carol", False)):
            wheel_path = make_wheel(dists, Dist("devpi-app", f"2.0.dev{int(ok)}"))
            answer = server.upload(
                wheel_path, auth=(name, PASSWORDS[name]), url=f"{server.url}/alice-dev/"
            )
            assert answer.ok is ok, answer.text
