"""Proxy repositories and groups with them: a PyPI cache that survives outages and can't
be confused (issue 15), through the app as pip, uv and twine call it.

The upstream is `FakeUpstream`, a simple index in a test thread that counts requests and
can fail, delay or lie. Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import models
from minirepo.app import create_app
from minirepo.errors import UserError
from minirepo.services import accounts, groups, repos
from minirepo.services.container import Services
from minirepo.services.fetches import FetchFailed
from tests.conftest import basic
from tests.helpers.backends import BACKENDS, backend_settings, run_cli, served
from tests.helpers.distfactory import Dist, escaped, make_wheel, upload_form, wheel_members
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.upstreamfake import FakeUpstream

PASSWORD = "a-password-1"
ALICE = basic("alice", PASSWORD)
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path, upstream: FakeUpstream) -> Iterator[Flask]:
    """A first start with the fake as its upstream: `main`, `pypi-proxy`, `all`."""
    with served(backend_settings(request, tmp_path, upstream=upstream.url)) as flask_app:
        accounts.add_user("alice", PASSWORD, method=FAST_HASH)
        repos.update("pypi-proxy", options={"min_free_disk": 0, "connect_timeout": 1.0})
        yield flask_app


def wheel_bytes(tmp_path: Path, dist: Dist) -> bytes:
    return make_wheel(tmp_path, dist).read_bytes()


def publish_upstream(upstream: FakeUpstream, tmp_path: Path, dist: Dist, **kw: object) -> bytes:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = make_wheel(tmp_path, dist)
    content = path.read_bytes()
    metadata = wheel_members(dist)[f"{escaped(dist.name)}-{dist.version}.dist-info/METADATA"]
    upstream.add_file(dist.name, path.name, content, metadata=metadata, **kw)  # type: ignore[arg-type]
    return content


def page(client: FlaskClient, path: str) -> dict[str, object]:
    answer = client.get(path, headers=JSON)
    assert answer.status_code == 200, (answer.status, answer.get_data(as_text=True))
    return answer.json  # type: ignore[return-value]


def filenames(client: FlaskClient, path: str) -> list[str]:
    return [entry["filename"] for entry in page(client, path)["files"]]  # type: ignore[attr-defined,index]


def download(client: FlaskClient, path: str) -> bytes:
    """The file's bytes, once its fetch (if any) has ended: kept, or not."""
    with client.get(path) as answer:
        assert answer.status_code == 200, (answer.status, answer.get_data(as_text=True))
        content = answer.get_data()
    services: Services = client.application.extensions["minirepo"]
    assert services.fetches.wait_idle(10)
    return content


def upload(client: FlaskClient, tmp_path: Path, dist: Dist, url: str = "/main/") -> tuple[int, str]:
    (tmp_path / "up").mkdir(exist_ok=True)
    form = upload_form(make_wheel(tmp_path / "up", dist))
    answer = client.post(url, data=form, headers=ALICE, content_type="multipart/form-data")
    return answer.status_code, answer.status


def test_first_start_makes_the_proxy_and_the_group(app: Flask, upstream: FakeUpstream) -> None:
    kinds = {row.name: row.kind for row in models.Repository.select()}
    assert kinds == {"main": "hosted", "pypi-proxy": "proxy", "all": "group"}
    assert groups.member_names(models.Repository.get(name="all").id) == ["main", "pypi-proxy"]
    assert repos.info_of(models.Repository.get(name="all")).upload_to == "main"
    assert models.Repository.get(name="pypi-proxy").upstream == upstream.url


def test_a_page_is_fetched_once_within_its_ttl(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    publish_upstream(upstream, tmp_path, Dist("requests", "2.0"))
    for path in ("/pypi-proxy/simple/requests/", "/all/simple/requests/"):
        assert filenames(client, path) == ["requests-2.0-py3-none-any.whl"]
        html = client.get(path).get_data(as_text=True)
        assert 'href="../../files/requests/requests-2.0-py3-none-any.whl#sha256=' in html
    assert upstream.count("/simple/requests/") == 1


def test_an_old_page_is_revalidated_with_its_etag(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    repos.update("pypi-proxy", options={"page_ttl": 0.0})
    client = app.test_client()
    publish_upstream(upstream, tmp_path, Dist("requests", "2.0"))
    filenames(client, "/pypi-proxy/simple/requests/")
    filenames(client, "/pypi-proxy/simple/requests/")
    asked = [headers for _, path, headers in upstream.requests if path == "/simple/requests/"]
    assert len(asked) == 2
    assert "if-none-match" not in asked[0]
    assert asked[1]["if-none-match"]  # answered 304: the page stands
    row = models.CachedPage.get(normalized="requests")
    assert row.etag == asked[1]["if-none-match"]


def test_outage_serves_the_stale_page_with_its_reason(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    repos.update("pypi-proxy", options={"page_ttl": 0.0})
    client = app.test_client()
    publish_upstream(upstream, tmp_path, Dist("requests", "2.0"))
    filenames(client, "/all/simple/requests/")
    upstream.down = True
    answer = client.get("/all/simple/requests/", headers=JSON)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["X-Minirepo-Upstream"].startswith("stale; since=")
    assert "503" in answer.headers["X-Minirepo-Upstream"]
    html = client.get("/all/simple/requests/").get_data(as_text=True)
    assert "minirepo-banner" in html
    assert "unreachable" in html
    health = client.get("/-/health")
    assert health.status_code == 200
    report = health.json["upstreams"]["pypi-proxy"]  # type: ignore[index]
    assert report["status"] == "degraded"
    assert "503" in report["last_error"]


def test_nothing_cached_is_502_with_the_reason_and_the_upstream_is_left_alone(
    app: Flask, upstream: FakeUpstream
) -> None:
    client = app.test_client()
    upstream.down = True
    first = client.get("/all/simple/numpy/")
    assert first.status_code == 502
    assert "pypi-proxy" in first.status
    assert "503" in first.status
    asked = len(upstream.requests)
    again = client.get("/all/simple/scipy/")
    assert again.status_code == 502
    assert len(upstream.requests) == asked  # marked down: not asked per name


def test_a_slow_upstream_is_504(app: Flask, upstream: FakeUpstream) -> None:
    repos.update("pypi-proxy", options={"read_timeout": 0.3})
    upstream.delay = 2.0
    answer = app.test_client().get("/pypi-proxy/simple/numpy/")
    assert answer.status_code == 504, answer.status


def test_an_upstream_404_is_followed(app: Flask, upstream: FakeUpstream, tmp_path: Path) -> None:
    client = app.test_client()
    assert client.get("/all/simple/nothing-here/").status_code == 404
    publish_upstream(upstream, tmp_path, Dist("going", "1.0"))
    repos.update("pypi-proxy", options={"page_ttl": 0.0})
    filenames(client, "/pypi-proxy/simple/going/")
    upstream.set_status("going", 410)
    assert client.get("/pypi-proxy/simple/going/").status_code == 404
    assert models.CachedPage.get(normalized="going").gone


def test_a_file_is_fetched_once_then_served_from_the_cache(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    content = publish_upstream(upstream, tmp_path, Dist("requests", "2.0"))
    filenames(client, "/all/simple/requests/")
    url = "/all/files/requests/requests-2.0-py3-none-any.whl"
    assert download(client, url) == content
    assert download(client, url) == content
    assert upstream.count("/files/") == 1
    stored = models.File.get(filename="requests-2.0-py3-none-any.whl")
    assert stored.repository.name == "pypi-proxy"
    assert stored.uploader is None


def test_metadata_is_fetched_once_and_checked(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    publish_upstream(upstream, tmp_path, Dist("requests", "2.0"))
    entry = page(client, "/all/simple/requests/")["files"][0]  # type: ignore[index]
    assert entry["core-metadata"]["sha256"]  # type: ignore[index]
    url = "/all/files/requests/requests-2.0-py3-none-any.whl.metadata"
    first = download(client, url)
    assert b"Name: requests" in first
    assert download(client, url) == first
    assert upstream.count("/files/requests-2.0-py3-none-any.whl.metadata") == 1
    assert upstream.count("/files/requests-2.0-py3-none-any.whl") == 1  # the .metadata only


def test_a_lying_hash_never_completes_a_body_and_nothing_is_kept(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    publish_upstream(upstream, tmp_path, Dist("liar", "1.0"), lie_sha256=True)
    filenames(client, "/all/simple/liar/")
    # Caught streaming: the body breaks off; caught before the first byte: a 502.
    try:
        with client.get("/all/files/liar/liar-1.0-py3-none-any.whl") as answer:
            answer.get_data()
        assert answer.status_code == 502
        assert "does not match" in answer.status or "is not the page" in answer.status
    except FetchFailed:
        pass
    services: Services = app.extensions["minirepo"]
    assert services.fetches.wait_idle(10)
    assert not models.File.select().where(models.File.filename.startswith("liar")).exists()
    assert list(services.folder.store.tmp.iterdir()) == []


def test_a_proxy_takes_no_uploads(app: Flask, tmp_path: Path) -> None:
    status, reason = upload(app.test_client(), tmp_path, Dist("mine", "1.0"), "/pypi-proxy/")
    assert status == 405
    assert "read-only" in reason


def test_an_internal_name_wins_over_upstream_also_after_its_files_go(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    publish_upstream(upstream, tmp_path, Dist("internal-tool", "9.0"))
    assert upload(client, tmp_path, Dist("internal-tool", "1.0"))[0] == 200
    assert filenames(client, "/all/simple/internal-tool/") == ["internal_tool-1.0-py3-none-any.whl"]
    models.File.delete().execute()
    models.Repository.update(generation=models.Repository.generation + 1).execute()
    assert filenames(client, "/all/simple/internal-tool/") == []
    assert upstream.count("/simple/internal-tool/") == 0


def test_the_origin_lock_refuses_an_upload_until_an_admin_moves_it(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    publish_upstream(upstream, tmp_path, Dist("requests", "2.0"))
    filenames(client, "/all/simple/requests/")
    status, reason = upload(client, tmp_path, Dist("requests", "99.0"))
    assert status == 403
    assert "requests is served from upstream 'pypi-proxy' in group 'all' since" in reason
    assert "minirepo origin set all requests --member main" in reason
    group = models.Repository.get(name="all")
    groups.set_origin(group, "requests", "main", actor="root")
    assert upload(client, tmp_path, Dist("requests", "99.0"))[0] == 200
    assert filenames(client, "/all/simple/requests/") == ["requests-99.0-py3-none-any.whl"]


def test_a_failing_proxy_stops_the_walk(app: Flask, upstream: FakeUpstream, tmp_path: Path) -> None:
    with FakeUpstream() as second:
        publish_upstream(second, tmp_path, Dist("numpy", "1.0"))
        repos.create("other-proxy", kind="proxy", upstream=second.url)
        repos.update("all", members=["main", "pypi-proxy", "other-proxy"])
        upstream.set_status("numpy", 500)
        answer = app.test_client().get("/all/simple/numpy/")
        assert answer.status_code == 502
        assert second.count("/simple/") == 0


def test_a_private_main_is_never_looked_up_upstream_for_strangers(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    assert upload(client, tmp_path, Dist("secret-tool", "1.0"))[0] == 200
    repos.update("main", read="authenticated")
    repos.update("all", read="authenticated", default_role="reader")
    assert client.get("/all/simple/secret-tool/").status_code == 401
    accounts.add_user("bob", PASSWORD, method=FAST_HASH)
    assert client.get("/all/simple/secret-tool/", headers=basic("bob", PASSWORD)).status_code == 200
    repos.update("main", default_role="none")  # bob can read all, not main
    refused = client.get("/all/simple/secret-tool/", headers=basic("bob", PASSWORD))
    assert refused.status_code == 404
    assert upstream.count("/simple/secret-tool/") == 0  # never asked on anyone's behalf


def test_offline_serves_only_what_is_cached(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    publish_upstream(upstream, tmp_path, Dist("requests", "1.0"))
    filenames(client, "/all/simple/requests/")
    download(client, "/all/files/requests/requests-1.0-py3-none-any.whl")
    publish_upstream(upstream, tmp_path, Dist("requests", "2.0"))
    repos.update("pypi-proxy", options={"offline": True})
    asked = len(upstream.requests)
    assert filenames(client, "/all/simple/requests/") == ["requests-1.0-py3-none-any.whl"]
    assert client.get("/all/simple/numpy/").status_code == 404
    missing = client.get("/pypi-proxy/simple/numpy/")
    assert missing.status_code == 404
    assert "offline" in missing.status
    assert len(upstream.requests) == asked


def test_eviction_keeps_the_cache_under_its_cap(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    contents = {}
    for number in range(4):
        name = f"pkg{number}"
        contents[name] = publish_upstream(upstream, tmp_path / name, Dist(name, "1.0"))
    largest = max(len(content) for content in contents.values())
    repos.update("pypi-proxy", options={"cache_max": 3 * largest})
    for name, content in contents.items():
        assert download(client, f"/all/files/{name}/{name}-1.0-py3-none-any.whl") == content
    held = {row.filename for row in models.File.select()}
    assert len(held) == 3
    assert "pkg0-1.0-py3-none-any.whl" not in held
    # Evicted, still listed, fetched again when asked for.
    assert download(client, "/all/files/pkg0/pkg0-1.0-py3-none-any.whl") == contents["pkg0"]
    assert upstream.count("/files/pkg0-") == 2


def test_two_hundred_downloads_cost_at_most_two_last_use_writes(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    publish_upstream(upstream, tmp_path, Dist("requests", "2.0"))
    url = "/all/files/requests/requests-2.0-py3-none-any.whl"
    download(client, url)
    services: Services = app.extensions["minirepo"]
    before = services.proxies.last_use.writes
    for _ in range(200):
        download(client, url)
    assert services.proxies.last_use.writes - before <= 2
    # The uses were noted all the same: written by the next flush (eviction forces one).
    assert models.File.get(filename="requests-2.0-py3-none-any.whl").last_used is None
    services.proxies.last_use.flush()
    assert models.File.get(filename="requests-2.0-py3-none-any.whl").last_used is not None


def test_bad_proxies_are_refused(app: Flask) -> None:
    with pytest.raises(UserError, match="needs --upstream"):
        repos.create("p", kind="proxy")
    with pytest.raises(UserError, match="http"):
        repos.create("p", kind="proxy", upstream="ftp://example/simple/")
    with pytest.raises(UserError, match="credentials"):
        repos.create("p", kind="proxy", upstream="https://u:p@example/simple/")
    with pytest.raises(UserError, match="for proxies"):
        repos.update("main", options={"page_ttl": 5.0})


def test_a_wheel_is_byte_exact(app: Flask, upstream: FakeUpstream, tmp_path: Path) -> None:
    client = app.test_client()
    content = publish_upstream(upstream, tmp_path, Dist("exact", "1.0", payload="x" * 300_000))
    got = download(client, "/pypi-proxy/files/exact/exact-1.0-py3-none-any.whl")
    assert got == content
    assert zipfile.ZipFile(io.BytesIO(got)).testzip() is None


def test_cache_fetch_seeds_a_requirements_file_for_offline_days(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    publish_upstream(upstream, tmp_path / "a", Dist("requests", "1.0"))
    publish_upstream(upstream, tmp_path / "b", Dist("requests", "2.0"))
    wanted = publish_upstream(upstream, tmp_path / "c", Dist("idna", "3.0"))
    assert upload(client, tmp_path, Dist("lab-tool", "1.0"))[0] == 200
    requirements = tmp_path / "requirements.txt"
    digest = hashlib.sha256(wanted).hexdigest()
    requirements.write_text(
        f"# pinned\nrequests==1.0\nidna==3.0 \\\n    --hash=sha256:{digest}\nlab-tool==1.0\n"
    )
    result = run_cli(app, "cache", "fetch", "all", "-r", str(requirements))
    assert result.exit_code == 0, result.output
    assert "Fetched 2 file(s); 1 already there; 0 failed." in result.output
    repos.update("pypi-proxy", options={"offline": True})
    asked = len(upstream.requests)
    assert filenames(client, "/all/simple/requests/") == ["requests-1.0-py3-none-any.whl"]
    assert download(client, "/all/files/idna/idna-3.0-py3-none-any.whl") == wanted
    metadata = client.get("/all/files/idna/idna-3.0-py3-none-any.whl.metadata")
    assert metadata.status_code == 200
    assert len(upstream.requests) == asked


def test_cache_fetch_reads_a_uv_lock(app: Flask, upstream: FakeUpstream, tmp_path: Path) -> None:
    content = publish_upstream(upstream, tmp_path, Dist("requests", "2.0"))
    publish_upstream(upstream, tmp_path / "other", Dist("requests", "3.0"))
    lock = tmp_path / "uv.lock"
    lock.write_text(
        'version = 1\n\n[[package]]\nname = "demo"\nversion = "0.1"\n'
        'source = { editable = "." }\n\n[[package]]\nname = "requests"\nversion = "2.0"\n'
        f'source = {{ registry = "{upstream.url}" }}\n'
        f'wheels = [{{ url = "{upstream.base}files/requests-2.0-py3-none-any.whl", '
        f'hash = "sha256:{hashlib.sha256(content).hexdigest()}" }}]\n'
    )
    result = run_cli(app, "cache", "fetch", "pypi-proxy", "--lock", str(lock))
    assert result.exit_code == 0, result.output
    assert [row.filename for row in models.File.select()] == ["requests-2.0-py3-none-any.whl"]


def test_cache_list_and_prune(app: Flask, upstream: FakeUpstream, tmp_path: Path) -> None:
    client = app.test_client()
    for number in range(2):
        publish_upstream(upstream, tmp_path / str(number), Dist(f"pkg{number}", "1.0"))
        download(client, f"/all/files/pkg{number}/pkg{number}-1.0-py3-none-any.whl")
    listing = run_cli(app, "cache", "list", "pypi-proxy").output.splitlines()
    assert [line.split("\t")[1] for line in listing[1:]] == [
        "pkg0-1.0-py3-none-any.whl",
        "pkg1-1.0-py3-none-any.whl",
    ]
    result = run_cli(app, "cache", "prune", "pypi-proxy", "--to", "0")
    assert "Removed 2 file(s)" in result.output
    assert not models.File.select().exists()
    refused = run_cli(app, "cache", "prune", "main")
    assert refused.exit_code == 1
    assert "main is not a proxy" in refused.output


def test_a_tracked_name_merges_its_members_with_pep_708_tracks(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    public = publish_upstream(upstream, tmp_path / "up", Dist("requests", "2.0"))
    assert upload(client, tmp_path, Dist("requests", "2.0.post1"))[0] == 200
    # Untracked: one member answers (main: hosted first).
    assert filenames(client, "/all/simple/requests/") == ["requests-2.0.post1-py3-none-any.whl"]
    result = run_cli(app, "repo", "track", "all", "Requests")
    assert result.exit_code == 0, result.output
    document = page(client, "/all/simple/requests/")
    assert [entry["filename"] for entry in document["files"]] == [  # type: ignore[attr-defined,index]
        "requests-2.0-py3-none-any.whl",
        "requests-2.0.post1-py3-none-any.whl",
    ]
    assert document["meta"]["tracks"] == [f"{upstream.url}requests/"]  # type: ignore[index]
    html = client.get("/all/simple/requests/").get_data(as_text=True)
    assert f'<meta name="pypi:tracks" content="{upstream.url}requests/">' in html
    assert download(client, "/all/files/requests/requests-2.0-py3-none-any.whl") == public
    hosted = download(client, "/all/files/requests/requests-2.0.post1-py3-none-any.whl")
    assert hosted[:2] == b"PK"
    assert run_cli(app, "repo", "track", "all").output.split() == ["requests"]
    events = [row.action for row in models.Event.select().where(models.Event.project == "requests")]
    assert "repo track" in events
    run_cli(app, "repo", "track", "all", "requests", "--remove")
    assert filenames(client, "/all/simple/requests/") == ["requests-2.0.post1-py3-none-any.whl"]


def test_concurrent_revalidations_ask_once_and_the_waiters_take_the_stale_page(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    publish_upstream(upstream, tmp_path, Dist("requests", "2.0"))
    repos.update(
        "pypi-proxy", options={"page_ttl": 0.0, "connect_timeout": 0.2, "read_timeout": 10.0}
    )
    client = app.test_client()
    filenames(client, "/pypi-proxy/simple/requests/")
    upstream.delay = 4.0  # the leader's revalidation takes longer than a waiter waits
    before = upstream.count("/simple/requests/")
    results: list[tuple[int, str]] = []

    services: Services = app.extensions["minirepo"]

    def ask() -> None:
        try:
            answer = app.test_client().get("/pypi-proxy/simple/requests/", headers=JSON)
            results.append((answer.status_code, answer.headers.get("X-Minirepo-Upstream", "")))
        finally:
            services.folder.database.handle.close()  # this thread's connection

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 3
    assert all(status == 200 for status, _ in results)
    stale = [header for _, header in results if header.startswith("stale")]
    assert len(stale) == 2  # the waiters, after connect_timeout + 2 s
    assert upstream.count("/simple/requests/") - before == 1


def test_a_name_gone_upstream_stays_404_within_the_ttl(
    app: Flask, upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = app.test_client()
    for _ in range(2):  # the second from the database row, not the upstream
        assert client.get("/pypi-proxy/simple/nothing-here/").status_code == 404
    publish_upstream(upstream, tmp_path, Dist("going", "1.0"))
    repos.update("pypi-proxy", options={"page_ttl": 0.0})
    filenames(client, "/pypi-proxy/simple/going/")
    upstream.set_status("going", 404)
    assert client.get("/pypi-proxy/simple/going/").status_code == 404
    repos.update("pypi-proxy", options={"page_ttl": 3600.0})
    # A restarted server knows only the database rows, young enough to be believed.
    restarted = create_app(app.extensions["minirepo"].settings)
    again: Services = restarted.extensions["minirepo"]
    try:
        for project in ("going", "nothing-here"):
            for repo in ("pypi-proxy", "all"):
                path = f"/{repo}/simple/{project}/"
                assert restarted.test_client().get(path).status_code == 404, path
    finally:
        again.fetches.close()
        again.proxies.close()
        again.folder.database.close()
