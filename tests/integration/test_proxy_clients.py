"""Proxy repositories and groups with REAL clients against REAL processes (the issue's
list for proxies): pip, uv, twine and poetry against a `minirepo serve` whose `pypi-proxy`
caches an upstream on loopback.

The upstream is a `FakeUpstream` where a test counts, fails or lies, or a second
`minirepo serve --no-upstream` filled with twine for the realistic chains. The box under
test is a first start with `MINIREPO_UPSTREAM` pointing there, then
`repo set pypi-proxy --min-free-disk 0` (`tests.helpers.proxyrig.box`).
tests/app/test_proxies.py covers the same rules through the app; here they are checked as
the clients see them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers.distfactory import Dist, escaped, make_wheel, wheel_members
from tests.helpers.proxyrig import (
    PY,
    UV,
    box,
    cached_files,
    flat,
    installed,
    output,
    page_files,
    pip_install,
    publish_upstream,
    rss_kib,
    run,
    uv_install,
    wait_until,
)
from tests.helpers.serverproc import Server, client_env, running_server
from tests.helpers.upstreamfake import FakeProxy, FakeUpstream

# uv retries a 5xx three times with backoff (about 8 s): one answer is what is checked.
NO_RETRIES = {"UV_HTTP_RETRIES": "0"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return client_env(tmp_path / "home")


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, output(result)


def paths(upstream: FakeUpstream, since: int = 0) -> list[str]:
    return [path for _, path, _ in upstream.requests[since:]]


def asked(upstream: FakeUpstream, path: str) -> int:
    """How many requests the upstream had for exactly `path` (`count` takes a prefix: a
    wheel's would count its `.metadata` too)."""
    return paths(upstream).count(path)


def twine(url: str, env: dict[str, str], files: list[Path], token: str) -> tuple[int, str]:
    cmd = [PY, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"]
    cmd += ["--repository-url", url, "-u", "__token__", "-p", token, *map(str, files)]
    result = run(cmd, env)
    return result.returncode, output(result)


def wheel(folder: Path, dist: Dist) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return make_wheel(folder, dist)


# --- 1. a second install asks the upstream nothing -----------------------------------------


@pytest.mark.parametrize("client", ["pip", "uv"])
def test_a_second_install_asks_nothing_and_an_old_page_costs_one_conditional_request(
    client: str, upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    publish_upstream(
        upstream, tmp_path / "up", Dist("cached-app", "1.0", requires_dist=("cached-lib",))
    )
    publish_upstream(upstream, tmp_path / "up", Dist("cached-lib", "1.0"))
    publish_upstream(upstream, tmp_path / "up", Dist("ttl-probe", "1.0"))
    install = pip_install if client == "pip" else uv_install
    expected = {"cached_app-1.0.dist-info", "cached_lib-1.0.dist-info"}
    with box(tmp_path / "box", upstream.url) as server:
        index = f"{server.url}/all/simple/"
        ok(result := install(index, env, tmp_path / "first", "cached-app"))
        assert installed(tmp_path / "first") == expected, output(result)
        first = paths(upstream)
        # Each page, each file's PEP 658 metadata and each wheel once.
        assert sorted(first) == sorted(
            [
                "/simple/cached-app/",
                "/simple/cached-lib/",
                "/files/cached_app-1.0-py3-none-any.whl",
                "/files/cached_app-1.0-py3-none-any.whl.metadata",
                "/files/cached_lib-1.0-py3-none-any.whl",
                "/files/cached_lib-1.0-py3-none-any.whl.metadata",
            ]
        ), first

        ok(result := install(index, env, tmp_path / "second", "cached-app"))
        assert installed(tmp_path / "second") == expected, output(result)
        second = paths(upstream, len(first))
        print(f"{client}: upstream requests, first run {len(first)}, second run {len(second)}")
        assert second == []

        # Pages expire at once from now on: the probe's second read asks the upstream.
        server.cli("repo", "set", "pypi-proxy", "--page-ttl", "0s")
        probe = f"{server.url}/pypi-proxy/simple/ttl-probe/"
        wait_until(
            lambda: page_files(probe) and upstream.count("/simple/ttl-probe/") >= 2,
            "--page-ttl 0s in force",
        )
        before = len(upstream.requests)
        ok(result := install(index, env, tmp_path / "third", "cached-app"))
        assert installed(tmp_path / "third") == expected, output(result)
        third = upstream.requests[before:]
        assert sorted(path for _, path, _ in third) == [
            "/simple/cached-app/",
            "/simple/cached-lib/",
        ]
        etags = {path: headers.get("if-none-match", "") for _, path, headers in third}
        assert all(etags.values()), third  # conditional: answered 304

        # The 304 kept the page's ETag: the next revalidation sends the same one, and it
        # is the upstream's own for that page.
        before = len(upstream.requests)
        assert page_files(f"{index}cached-app/") == ["cached_app-1.0-py3-none-any.whl"]
        (_, _, again), *_ = upstream.requests[before:]
        assert again["if-none-match"] == etags["/simple/cached-app/"]
        same = {"Accept": again["accept"], "Accept-Encoding": again.get("accept-encoding", "")}
        direct = requests.get(f"{upstream.url}cached-app/", headers=same, timeout=30)
        assert direct.headers["ETag"] == etags["/simple/cached-app/"]


# --- 2. outages -------------------------------------------------------------------------------


def test_an_outage_installs_what_is_cached_and_offline_installs_the_cached_older_version(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    publish_upstream(upstream, tmp_path / "up", Dist("outage-pkg", "1.0"))
    publish_upstream(upstream, tmp_path / "up", Dist("older-pkg", "1.0"))
    publish_upstream(upstream, tmp_path / "up", Dist("older-pkg", "2.0"))
    with box(tmp_path / "box", upstream.url, proxy_options=("--page-ttl", "0s")) as server:
        index = f"{server.url}/all/simple/"
        ok(pip_install(index, env, tmp_path / "warm", "outage-pkg", "older-pkg==1.0"))

        upstream.down = True
        answer = requests.get(f"{index}outage-pkg/", timeout=30)
        assert answer.status_code == 200
        assert answer.headers["Cache-Control"] == "no-cache"
        stale = answer.headers["X-Minirepo-Upstream"]
        assert stale.startswith("stale; since="), stale
        assert "503" in stale
        ok(result := pip_install(index, env, tmp_path / "stale", "outage-pkg"))
        assert installed(tmp_path / "stale") == {"outage_pkg-1.0.dist-info"}, output(result)

        # Nothing cached: 502 with the reason. pip hides any error of an index page behind
        # "no matching distribution" (it logs the fetch failure at debug level, and without
        # the reason phrase even then); uv prints the status line.
        result = pip_install(
            index, env, tmp_path / "uncached", "never-cached", extra=("--retries", "0")
        )
        assert result.returncode != 0
        assert "No matching distribution found for never-cached" in output(result)
        result = uv_install(index, env | NO_RETRIES, tmp_path / "uv-uncached", "never-cached")
        assert result.returncode != 0
        said = flat(output(result))
        assert "502 pypi-proxy: " in said, said
        assert upstream.url in said, said
        assert "503" in said, said
        answer = requests.get(f"{index}never-cached/", timeout=30)
        assert answer.status_code == 502
        assert upstream.url in answer.reason, answer.reason
        assert "503" in answer.reason, answer.reason

        # Offline: the cached 1.0, although the upstream (up again) lists 2.0.
        upstream.down = False
        server.cli("repo", "set", "pypi-proxy", "--offline")
        wait_until(
            lambda: (
                "offline"
                in requests.get(f"{server.url}/pypi-proxy/simple/nope/", timeout=30).reason
            ),
            "--offline in force",
        )
        before = len(upstream.requests)
        ok(result := pip_install(index, env, tmp_path / "offline", "older-pkg"))
        assert installed(tmp_path / "offline") == {"older_pkg-1.0.dist-info"}, output(result)
        assert len(upstream.requests) == before
        assert page_files(f"{upstream.url}older-pkg/") == [
            "older_pkg-1.0-py3-none-any.whl",
            "older_pkg-2.0-py3-none-any.whl",
        ]


def test_a_slow_upstream_is_504_with_the_reason(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    publish_upstream(upstream, tmp_path / "up", Dist("slow-pkg", "1.0"))
    with box(tmp_path / "box", upstream.url, proxy_options=("--read-timeout", "1s")) as server:
        upstream.delay = 4.0
        index = f"{server.url}/all/simple/"
        result = uv_install(index, env | NO_RETRIES, tmp_path / "uv", "slow-pkg")
        assert result.returncode != 0
        said = flat(output(result))
        assert "504 pypi-proxy: " in said, said
        assert "timed out" in said, said
        result = pip_install(index, env, tmp_path / "pip", "slow-pkg", extra=("--retries", "0"))
        assert result.returncode != 0
        assert "No matching distribution found for slow-pkg" in output(result)
        # Left alone for 30 s after the timeout: still a 504, the upstream not asked again.
        before = len(upstream.requests)
        answer = requests.get(f"{index}slow-pkg/", timeout=30)
        assert answer.status_code == 504, answer.reason
        assert "timed out" in answer.reason, answer.reason
        assert len(upstream.requests) == before


# --- 3. a lying hash ---------------------------------------------------------------------------


def test_a_lying_hash_fails_pip_and_nothing_is_kept(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    filler = random.Random(3).randbytes(300_000).hex()  # noqa: S311 - filler, not a secret
    liar = Dist("liar-pkg", "1.0", payload=f"DATA = {filler!r}\n")
    publish_upstream(upstream, tmp_path / "up", liar, lie_sha256=True)
    with box(tmp_path / "box", upstream.url) as server:
        index = f"{server.url}/all/simple/"
        result = pip_install(index, env, tmp_path / "pip", "liar-pkg", extra=("--retries", "0"))
        assert result.returncode != 0
        said = output(result)
        assert installed(tmp_path / "pip") == set()
        # Caught while streaming, the body breaks off before its last chunk; pip 26 then
        # resumes (a Range request, up to five times), each attempt a new fetch that breaks
        # off again. Caught before the answer began (a small file, a fast upstream): 502.
        failures = ("incomplete-download", "DO NOT MATCH THE HASHES", "too many 502 error")
        assert any(failure in said for failure in failures), said
        assert asked(upstream, "/files/liar_pkg-1.0-py3-none-any.whl") >= 1
        assert "liar" not in cached_files(server)
        wait_until(lambda: not list((server.data / "tmp").iterdir()), "the .part removed")


# --- 4. many first requests for one big file ---------------------------------------------


def big_wheel(folder: Path, dist: Dist, size: int) -> Path:
    """A valid wheel holding `size` incompressible bytes (stored, not deflated)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / dist.wheel_name
    rng = random.Random(size)  # noqa: S311 - filler bytes, not a secret
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for member, data in wheel_members(dist).items():
            archive.writestr(member, data)
        archive.writestr(f"{dist.module}/blob.bin", rng.randbytes(size))
    return path


def publish_big(upstream: FakeUpstream, folder: Path, dist: Dist, size: int) -> Path:
    path = big_wheel(folder, dist, size)
    metadata = wheel_members(dist)[f"{escaped(dist.name)}-{dist.version}.dist-info/METADATA"]
    upstream.add_file(dist.name, path.name, path.read_bytes(), metadata=metadata)
    return path


@dataclasses.dataclass
class Watch:
    """Polls `/-/health` every 100 ms and the server's VmRSS, keeping the worst seen."""

    server: Server
    max_health: float = 0.0
    health_failures: list[str] = dataclasses.field(default_factory=list)
    peak_rss: int = 0
    polls: int = 0
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    answer = session.get(f"{self.server.url}/-/health", timeout=5)
                    if answer.status_code != 200:
                        self.health_failures.append(f"{answer.status_code} {answer.reason}")
                except requests.RequestException as exc:
                    self.health_failures.append(repr(exc))
                self.max_health = max(self.max_health, time.monotonic() - start)
                self.peak_rss = max(self.peak_rss, rss_kib(self.server.proc.pid))
                self.polls += 1
                self._stop.wait(0.1)

    @contextlib.contextmanager
    def watching(self) -> Iterator[Watch]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(10)


def download_like_pip(url: str, attempts: int = 30) -> tuple[int, str, int]:
    """(status, sha256 of the body, requests made): a 503 is retried after its
    Retry-After, as pip and uv do, at most `attempts` times."""
    for attempt in range(1, attempts + 1):
        with requests.get(url, stream=True, timeout=60) as answer:
            if answer.status_code == 503:
                time.sleep(float(answer.headers.get("Retry-After", "1")))
                continue
            digest = hashlib.sha256()
            for chunk in answer.iter_content(65536):
                digest.update(chunk)
            return answer.status_code, digest.hexdigest(), attempt
    return 503, "", attempts


def test_twenty_first_requests_for_a_big_file_cost_one_upstream_get(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """20 clients at once for a 50 MB file the proxy does not hold: six tail the one fetch
    (`threads - 2`), the others get 503 + Retry-After and retry, as pip and uv do."""
    big = publish_big(upstream, tmp_path / "up", Dist("big-pkg", "1.0"), 50 * 1024 * 1024)
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    upstream.trickle = 0.002  # 64 KiB at a time: about 30 MB/s, so the fetch takes a while
    with box(tmp_path / "box", upstream.url) as server:
        assert page_files(f"{server.url}/all/simple/big-pkg/") == [big.name]
        url = f"{server.url}/all/files/big-pkg/{big.name}"
        results: list[tuple[int, str, int] | Exception | None] = [None] * 20

        def client(number: int) -> None:
            try:
                results[number] = download_like_pip(url)
            except Exception as exc:  # reported by the assertion below
                results[number] = exc

        before = rss_kib(server.proc.pid)
        started = time.monotonic()
        with Watch(server).watching() as watch:
            threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
        took = time.monotonic() - started
    growth = (watch.peak_rss - before) / 1024
    tries = [result[2] for result in results if isinstance(result, tuple)]
    print(
        f"upstream GETs of the file: {asked(upstream, '/files/' + big.name)}; "
        f"max /-/health latency {watch.max_health * 1000:.0f} ms over {watch.polls} polls; "
        f"RSS {before / 1024:.1f} MiB before, peak {watch.peak_rss / 1024:.1f} MiB "
        f"(+{growth:.1f} MiB); requests per client {tries}; {took:.1f} s"
    )
    bodies = [result[:2] if isinstance(result, tuple) else result for result in results]
    assert bodies == [(200, expected)] * 20, bodies
    assert asked(upstream, f"/files/{big.name}") == 1
    assert watch.health_failures == []
    assert watch.max_health < 1.0
    # Last, so that a failure here says the rest held: the budget is the issue's.
    assert growth < 10, f"server RSS grew {growth:.1f} MiB (budget: 10)"


def test_a_client_that_leaves_early_still_leaves_the_file_cached(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    dropped = publish_big(upstream, tmp_path / "up", Dist("dropped-pkg", "1.0"), 8 * 1024 * 1024)
    upstream.trickle = 0.01  # about 1.3 s for the file: the client leaves early in it
    with box(tmp_path / "box", upstream.url) as server:
        url = f"{server.url}/all/files/dropped-pkg/{dropped.name}"
        with requests.get(url, stream=True, timeout=60) as answer:
            assert answer.status_code == 200
            received = 0
            for chunk in answer.iter_content(65536):
                received += len(chunk)
                if received >= 1024 * 1024:
                    break
        assert received < dropped.stat().st_size
        wait_until(lambda: dropped.name in cached_files(server), "the dropped file kept", 60, 0.2)
        before = len(upstream.requests)
        status, digest, _ = download_like_pip(url)
        assert (status, digest) == (200, hashlib.sha256(dropped.read_bytes()).hexdigest())
        assert len(upstream.requests) == before
        assert asked(upstream, f"/files/{dropped.name}") == 1


@pytest.mark.parametrize("client", ["pip", "uv"])
def test_pip_and_uv_retry_a_503_while_every_download_slot_is_taken(
    client: str, upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    """README: "at most `threads - 2` run at once, the next client gets 503 with
    Retry-After (pip and uv retry)"."""
    big = publish_big(upstream, tmp_path / "up", Dist("slot-filler", "1.0"), 30 * 1024 * 1024)
    small = publish_upstream(upstream, tmp_path / "up", Dist("small-pkg", "1.0"))
    upstream.trickle = 0.006  # about 3 s for the big file: within pip's and uv's retries
    with box(tmp_path / "box", upstream.url) as server:
        index = f"{server.url}/all/simple/"
        assert page_files(f"{index}small-pkg/") == [small.name]
        url = f"{server.url}/all/files/slot-filler/{big.name}"
        streaming: list[int] = []

        def tail() -> None:
            with requests.get(url, stream=True, timeout=60) as answer:
                streaming.append(answer.status_code)
                for _ in answer.iter_content(65536):
                    pass

        tails = [threading.Thread(target=tail) for _ in range(6)]
        for thread in tails:
            thread.start()
        wait_until(lambda: len(streaming) == 6, "six downloads streaming")
        assert streaming == [200] * 6
        # A seventh download is refused without being started.
        small_url = f"{server.url}/all/files/small-pkg/{small.name}"
        busy = requests.get(small_url, timeout=30)
        assert busy.status_code == 503, busy.reason
        assert busy.headers["Retry-After"], busy.headers
        install = pip_install if client == "pip" else uv_install
        ok(result := install(index, env, tmp_path / client, "small-pkg"))
        assert installed(tmp_path / client) == {"small_pkg-1.0.dist-info"}, output(result)
        for thread in tails:
            thread.join(120)
        assert asked(upstream, f"/files/{small.name}") == 1
        assert asked(upstream, f"/files/{big.name}") == 1


# --- 5. the guard: internal names, the origin lock, a failing proxy ---------------------------


def poetry_env(env: dict[str, str], home: Path, url: str, token: str) -> dict[str, str]:
    return env | {
        "POETRY_CONFIG_DIR": str(home / "poetry-config"),
        "POETRY_CACHE_DIR": str(home / "poetry-cache"),
        "POETRY_DATA_DIR": str(home / "poetry-data"),
        "POETRY_REPOSITORIES_MINIREPO_URL": url,
        "POETRY_HTTP_BASIC_MINIREPO_USERNAME": "__token__",
        "POETRY_HTTP_BASIC_MINIREPO_PASSWORD": token,
    }


def test_an_internal_name_never_comes_from_upstream(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    publish_upstream(upstream, tmp_path / "up", Dist("internal-tool", "9.0"))
    with box(tmp_path / "box", upstream.url) as server:
        index = f"{server.url}/all/simple/"
        mine = wheel(tmp_path / "mine", Dist("internal-tool", "1.0"))
        assert twine(f"{server.url}/main/", env, [mine], server.admin_token)[0] == 0
        ok(result := pip_install(index, env, tmp_path / "pip", "internal-tool"))
        assert installed(tmp_path / "pip") == {"internal_tool-1.0.dist-info"}, output(result)
        ok(result := uv_install(index, env, tmp_path / "uv", "internal-tool"))
        assert installed(tmp_path / "uv") == {"internal_tool-1.0.dist-info"}, output(result)

        # Its files deleted, the name stays main's: no version at all, never 9.0.
        server.cli("delete", "main", "internal-tool", "--yes")
        wait_until(lambda: page_files(f"{index}internal-tool/") == [], "the files deleted")
        result = pip_install(index, env, tmp_path / "pip-after", "internal-tool")
        assert result.returncode != 0
        assert "No matching distribution found for internal-tool" in output(result)
        assert installed(tmp_path / "pip-after") == set()
        result = uv_install(index, env, tmp_path / "uv-after", "internal-tool")
        assert result.returncode != 0
        assert "there are no versions of internal-tool" in flat(output(result)), output(result)
        assert installed(tmp_path / "uv-after") == set()
        assert upstream.count("/simple/internal-tool/") == 0


def test_the_origin_lock_refuses_twine_and_poetry_until_an_admin_moves_the_name(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    publish_upstream(upstream, tmp_path / "up", Dist("requests", "2.0"))
    with box(tmp_path / "box", upstream.url) as server:
        index = f"{server.url}/all/simple/"
        ok(pip_install(index, env, tmp_path / "pip", "requests"))
        ours = wheel(tmp_path / "proj" / "dist", Dist("requests", "99.0"))
        status, said = twine(f"{server.url}/main/", env, [ours], server.admin_token)
        assert status != 0
        assert "403" in said, said
        lock = "requests is served from upstream 'pypi-proxy' in group 'all' since"
        assert lock in flat(said), said
        assert "minirepo origin set all requests --member main" in flat(said), said

        project = tmp_path / "proj"
        (project / "pyproject.toml").write_text(
            '[project]\nname = "requests"\nversion = "99.0"\nrequires-python = ">=3.8"\n'
        )
        publish = [PY, "-m", "poetry", "--no-interaction", "publish", "-r", "minirepo"]
        home = tmp_path / "home"
        penv = poetry_env(env, home, f"{server.url}/main/", server.admin_token)
        result = run([*publish, "--skip-existing"], penv, project)
        assert result.returncode != 0, output(result)
        assert "HTTP Error 403: " + lock in output(result), output(result)
        assert page_files(f"{index}requests/") == ["requests-2.0-py3-none-any.whl"]

        server.cli("origin", "set", "all", "requests", "--member", "main")
        status, said = twine(f"{server.url}/main/", env, [ours], server.admin_token)
        assert status == 0, said
        wait_until(
            lambda: page_files(f"{index}requests/") == ["requests-99.0-py3-none-any.whl"],
            "requests served from main",
        )


def test_a_failing_proxy_is_502_and_the_next_proxy_is_never_asked(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    with FakeUpstream() as other, box(tmp_path / "box", upstream.url) as server:
        publish_upstream(other, tmp_path / "other", Dist("only-other", "1.0"))
        publish_upstream(other, tmp_path / "other", Dist("broken-name", "1.0"))
        server.cli("repo", "create", "other", "--kind", "proxy", "--upstream", other.url)
        server.cli("repo", "set", "other", "--min-free-disk", "0")
        server.cli("repo", "set", "all", "--members", "main,pypi-proxy,other")
        index = f"{server.url}/all/simple/"
        # The new member answers a name pypi-proxy's upstream does not have.
        wait_until(
            lambda: requests.get(f"{index}only-other/", timeout=30).status_code == 200,
            "other in the group",
        )
        upstream.set_status("broken-name", 500)
        result = uv_install(index, env | NO_RETRIES, tmp_path / "uv", "broken-name")
        assert result.returncode != 0
        said = flat(output(result))
        assert "502 pypi-proxy: " in said, said
        assert "500" in said, said
        result = pip_install(index, env, tmp_path / "pip", "broken-name", extra=("--retries", "0"))
        assert result.returncode != 0
        assert requests.get(f"{index}broken-name/", timeout=30).status_code == 502
        assert upstream.count("/simple/broken-name/") == 1
        assert other.count("/simple/broken-name/") == 0


# --- 6. the cache's cap ---------------------------------------------------------------------


def test_cache_max_keeps_three_files(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    wheels = [
        publish_upstream(upstream, tmp_path / "up", Dist(f"capped{n}", "1.0")) for n in range(4)
    ]
    cap = 3 * max(path.stat().st_size for path in wheels)
    assert 4 * min(path.stat().st_size for path in wheels) > cap
    with box(tmp_path / "box", upstream.url, proxy_options=("--cache-max", str(cap))) as server:
        specs = [f"capped{n}" for n in range(4)]
        ok(pip_install(f"{server.url}/all/simple/", env, tmp_path / "pip", *specs))
        listed = cached_files(server).splitlines()[1:]
        assert len(listed) == 3, listed


# --- 7. PEP 658 metadata; the environment's HTTP proxy ----------------------------------------


def test_uv_pip_compile_through_all_downloads_no_wheel(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    publish_upstream(
        upstream, tmp_path / "up", Dist("meta-top", "1.0", requires_dist=("meta-dep>=2",))
    )
    publish_upstream(upstream, tmp_path / "up", Dist("meta-dep", "1.0"))
    publish_upstream(upstream, tmp_path / "up", Dist("meta-dep", "2.0"))
    requirements = tmp_path / "requirements.in"
    requirements.write_text("meta-top\n")
    with box(tmp_path / "box", upstream.url) as server:
        cmd = [UV, "pip", "compile", str(requirements), "--python", PY, "--no-header"]
        cmd += ["--cache-dir", str(tmp_path / "uv-cache")]
        result = run([*cmd, "--index-url", f"{server.url}/all/simple/"], env)
        ok(result)
        assert "meta-top==1.0" in result.stdout, result.stdout
        assert "meta-dep==2.0" in result.stdout, result.stdout
    files = [path for path in paths(upstream) if path.startswith("/files/")]
    assert files, paths(upstream)
    assert all(path.endswith(".whl.metadata") for path in files), files


@pytest.mark.parametrize("no_proxy", ["", "127.0.0.1"])
def test_the_environments_http_proxy_is_used_unless_no_proxy_says_otherwise(
    no_proxy: str, upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    wheel_path = publish_upstream(upstream, tmp_path / "up", Dist("proxied-pkg", "1.0"))
    proxies = {"HTTP_PROXY": "", "http_proxy": "", "NO_PROXY": no_proxy, "no_proxy": no_proxy}
    with FakeProxy() as proxy:
        proxies["HTTP_PROXY"] = proxies["http_proxy"] = proxy.url
        with box(tmp_path / "box", upstream.url, settings=proxies) as server:
            ok(pip_install(f"{server.url}/all/simple/", env, tmp_path / "pip", "proxied-pkg"))
        lines = [line for line, _ in proxy.requests]
    assert upstream.count("/simple/proxied-pkg/") == 1
    assert asked(upstream, f"/files/{wheel_path.name}") == 1
    if no_proxy:
        assert lines == []
    else:
        assert f"GET {upstream.url}proxied-pkg/ HTTP/1.1" in lines, lines
        assert f"GET {upstream.base}files/{wheel_path.name} HTTP/1.1" in lines, lines


# --- 8. a chain across main and the upstream ------------------------------------------------

CHAIN_HOSTED = (
    Dist("hosted-app", "1.0", requires_python=">=3.8", requires_dist=("hosted-lib",)),
    Dist("hosted-lib", "1.0", requires_python=">=3.8", requires_dist=("up-a",)),
)
CHAIN_UPSTREAM = (
    Dist("up-a", "1.0", requires_python=">=3.8", requires_dist=("up-b>=1",)),
    Dist("up-b", "1.0", requires_python=">=3.8", requires_dist=("up-c",)),
    Dist("up-c", "1.0", requires_python=">=3.8"),
    Dist("up-c", "2.0", requires_python=">=3.8"),
)
CHAIN_INSTALLED = {
    "hosted_app-1.0.dist-info",
    "hosted_lib-1.0.dist-info",
    "up_a-1.0.dist-info",
    "up_b-1.0.dist-info",
    "up_c-2.0.dist-info",
}

UV_PROJECT = """\
[project]
name = "consumer"
version = "0.1.0"
requires-python = ">=3.8"
dependencies = []

[[tool.uv.index]]
name = "box"
url = "{index}"
default = true
"""


@pytest.fixture
def chain_box(tmp_path: Path, env: dict[str, str]) -> Iterator[Server]:
    """A box whose main holds hosted-app and hosted-lib, and whose upstream is a second
    minirepo holding up-a, up-b and up-c (two versions), all uploaded with twine."""
    with running_server(tmp_path / "upstream", serve_args=("--no-upstream",)) as origin:
        files = [wheel(tmp_path / "up", dist) for dist in CHAIN_UPSTREAM]
        status, said = twine(f"{origin.url}/main/", env, files, origin.admin_token)
        assert status == 0, said
        with box(tmp_path / "box", f"{origin.url}/simple/") as server:
            files = [wheel(tmp_path / "hosted", dist) for dist in CHAIN_HOSTED]
            status, said = twine(f"{server.url}/main/", env, files, server.admin_token)
            assert status == 0, said
            yield server


def test_pip_installs_a_chain_from_main_and_the_upstream(
    chain_box: Server, env: dict[str, str], tmp_path: Path
) -> None:
    ok(result := pip_install(f"{chain_box.url}/all/simple/", env, tmp_path / "pip", "hosted-app"))
    assert installed(tmp_path / "pip") == CHAIN_INSTALLED, output(result)


def test_uv_add_and_lock_a_chain_from_main_and_the_upstream(
    chain_box: Server, env: dict[str, str], tmp_path: Path
) -> None:
    del env["UV_NO_CONFIG"]  # it would make uv ignore the project's own [tool.uv]
    index = f"{chain_box.url}/all/simple/"
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "pyproject.toml").write_text(UV_PROJECT.format(index=index))
    ok(run([UV, "add", "--python", PY, "hosted-app"], env, project))
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert installed(project / ".venv" / "lib" / version / "site-packages") >= CHAIN_INSTALLED
    lock = (project / "uv.lock").read_text()
    assert lock.count(f'source = {{ registry = "{index}" }}') == 5, lock
    ok(run([UV, "lock", "--locked", "--python", PY], env, project))


# --- 9. a private main ----------------------------------------------------------------------


def test_a_private_main_is_never_looked_up_upstream(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    publish_upstream(upstream, tmp_path / "up", Dist("secret-tool", "9.0"))
    publish_upstream(upstream, tmp_path / "up", Dist("public-pkg", "1.0"))
    settings = {"MINIREPO_READ": "authenticated"}
    with box(tmp_path / "box", upstream.url, settings=settings) as server:
        mine = wheel(tmp_path / "mine", Dist("secret-tool", "1.0"))
        assert twine(f"{server.url}/main/", env, [mine], server.admin_token)[0] == 0
        index = f"{server.url}/all/simple/"
        for name in ("secret-tool", "public-pkg"):
            assert requests.get(f"{index}{name}/", timeout=30).status_code == 401

        server.add_user("bob", "bob-password-1")
        server.cli("repo", "set", "main", "--default-role", "none")
        bob = ("bob", "bob-password-1")
        wait_until(
            lambda: requests.get(f"{index}secret-tool/", auth=bob, timeout=30).status_code == 404,
            "bob without rights in main",
        )
        host = server.url.removeprefix("http://")
        as_bob = f"http://bob:bob-password-1@{host}/all/simple/"
        result = uv_install(as_bob, env, tmp_path / "uv", "secret-tool")
        assert result.returncode != 0
        assert installed(tmp_path / "uv") == set()
        result = pip_install(as_bob, env, tmp_path / "pip", "secret-tool")
        assert result.returncode != 0
        assert installed(tmp_path / "pip") == set()
        assert upstream.count("/simple/secret-tool/") == 0
        assert upstream.count("/simple/public-pkg/") == 0  # anonymous: refused first
        # The admin reads main's own 1.0 through the group.
        admin = ("__token__", server.admin_token)
        assert page_files(f"{index}secret-tool/", auth=admin) == [
            "secret_tool-1.0-py3-none-any.whl"
        ]
        assert upstream.count("/simple/secret-tool/") == 0


# --- a name the upstream does not have --------------------------------------------------------


def test_a_name_the_upstream_does_not_have_is_404_every_time(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    """pip and uv asking twice for a name missing upstream (a typo, an extra, a second
    run) must get the same 404 both times, within the page TTL too."""
    with box(tmp_path / "box", upstream.url) as server:
        index = f"{server.url}/all/simple/"
        for attempt in ("first", "second"):
            result = uv_install(index, env | NO_RETRIES, tmp_path / attempt, "no-such-pkg")
            assert result.returncode != 0
            said = flat(output(result))
            assert "not found in the package registry" in said, (attempt, said)
        for repo in ("all", "pypi-proxy"):
            for _ in range(2):
                answer = requests.get(f"{server.url}/{repo}/simple/nothing-here/", timeout=30)
                assert answer.status_code == 404, (repo, answer.status_code, answer.reason)


def test_a_project_gone_upstream_stays_gone_within_the_page_ttl(
    upstream: FakeUpstream, env: dict[str, str], tmp_path: Path
) -> None:
    """README: "A project gone upstream (404, 410) is gone here too"."""
    publish_upstream(upstream, tmp_path / "up", Dist("going-pkg", "1.0"))
    with box(tmp_path / "box", upstream.url, proxy_options=("--page-ttl", "3s")) as server:
        url = f"{server.url}/all/simple/going-pkg/"
        assert page_files(url) == ["going_pkg-1.0-py3-none-any.whl"]
        upstream.set_status("going-pkg", 404)
        # Fresh for 3 s, then revalidated: the upstream's 404 comes through.
        wait_until(lambda: requests.get(url, timeout=30).status_code == 404, "the 404", 20, 0.1)
        answer = requests.get(url, timeout=30)
        assert answer.status_code == 404, (answer.status_code, answer.text)
        result = uv_install(f"{server.url}/all/simple/", env, tmp_path / "uv", "going-pkg")
        assert result.returncode != 0, output(result)
        assert installed(tmp_path / "uv") == set()
