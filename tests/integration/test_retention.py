"""A repository's retention rule is applied by the running server, not only by
`minirepo prune`: set with `repo set` while it serves, applied at its next look (at each
start, then hourly), once a day."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import running_server

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def test_the_server_applies_a_repositorys_rule(tmp_path: Path) -> None:
    with running_server(tmp_path) as srv:
        for version in ("1.0.dev1", "1.0.dev2", "1.0"):
            assert srv.upload(make_wheel(tmp_path, Dist("nightly", version))).status_code == 200
        result = srv.cli("repo", "set", "main", "--keep", "0", "--dev-only")
        assert "today it would prune 2 file(s) of 2 release(s)" in result.stdout
    with running_server(tmp_path) as srv:
        line = srv.wait_for_log("retention (keep 0, dev releases only) pruned")
        assert line.endswith("pruned 2 file(s) of 2 release(s) in main")
        page = requests.get(f"{srv.url}/simple/nightly/", headers=JSON, timeout=10)
        assert page.json()["versions"] == ["1.0"]
        events = [json.loads(line) for line in srv.cli("audit", "--json").stdout.splitlines()]
        pruned = [event for event in events if event["action"] == "prune"]
        assert {event["actor"] for event in pruned} == {"retention"}
        assert len(pruned) == 2
