"""`minirepo advisories update` on SQLite and PostgreSQL (issue 19): a zip, a folder and a
file give one state; a second import of the same data changes nothing; a breached cap and
a killed import keep the advisories in force; a full export prunes, `withdrawn` removes."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from minirepo import models, osv_source
from minirepo.services import advisories
from tests.helpers.backends import BACKENDS, backend_settings, run_cli, served
from tests.helpers.osvdocs import record, write_folder, write_zip

DOCUMENTS = [
    record("GHSA-aaaa-0000-0001", "demo", fixed="1.1", severity="HIGH", aliases=["CVE-2026-1"]),
    record("PYSEC-2026-1", "demo", fixed="1.1", aliases=["CVE-2026-1"]),
    record("GHSA-bbbb-0000-0002", "other", versions=["2.0"], severity="LOW"),
]


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with served(backend_settings(request, tmp_path)) as flask_app:
        yield flask_app


def state() -> dict[str, tuple[str, str]]:
    """The records in force: id -> (severity, the names it is about)."""
    generation = advisories.generation_in_force()
    held = models.Advisory.select().where(models.Advisory.generation == generation)
    names = {}
    for row in models.AdvisoryPackage.select().where(
        models.AdvisoryPackage.generation == generation
    ):
        names.setdefault(row.osv_id, []).append(row.normalized)
    return {row.osv_id: (row.severity, ",".join(sorted(names[row.osv_id]))) for row in held}


def update(app: Flask, source: Path | str, *more: str) -> str:
    result = run_cli(app, "advisories", "update", "--from", str(source), *more)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_zip_a_folder_and_files_give_one_state(app: Flask, tmp_path: Path) -> None:
    expected = {
        "GHSA-aaaa-0000-0001": ("high", "demo"),
        "PYSEC-2026-1": ("unknown", "demo"),
        "GHSA-bbbb-0000-0002": ("low", "other"),
    }
    assert "3 advisories in force" in update(app, write_zip(tmp_path / "all.zip", DOCUMENTS))
    assert state() == expected
    generation = advisories.generation_in_force()
    counter = models.read_counter(models.ADVISORY_COUNTER)
    folder = write_folder(tmp_path / "folder", DOCUMENTS)
    assert "No change" in update(app, folder)
    for document in DOCUMENTS:
        assert "No change" in update(app, folder / f"{document['id']}.json")
    assert state() == expected
    assert advisories.generation_in_force() == generation
    assert models.read_counter(models.ADVISORY_COUNTER) == counter


def test_newer_records_replace_and_withdrawn_ones_go(app: Flask, tmp_path: Path) -> None:
    update(app, write_folder(tmp_path / "first", DOCUMENTS))
    changed = record(
        "GHSA-aaaa-0000-0001",
        "demo",
        fixed="1.2",
        severity="CRITICAL",
        modified="2026-02-01T00:00:00Z",
    )
    older = record(
        "GHSA-bbbb-0000-0002", "other", severity="CRITICAL", modified="2025-01-01T00:00:00Z"
    )
    gone = {**DOCUMENTS[1], "withdrawn": "2026-02-01T00:00:00Z", "modified": "2026-02-01T00:00:00Z"}
    folder = write_folder(tmp_path / "second", [changed, older, gone])
    output = update(app, folder, "--no-prune")
    assert "1 changed, 1 removed" in output, output
    assert state() == {
        "GHSA-aaaa-0000-0001": ("critical", "demo"),
        "GHSA-bbbb-0000-0002": ("low", "other"),
    }
    # A full export without "other"'s advisory prunes it.
    update(app, write_folder(tmp_path / "third", [changed]))
    assert state() == {"GHSA-aaaa-0000-0001": ("critical", "demo")}
    # Old generations' rows are gone: only the one in force is stored.
    assert {row.generation for row in models.Advisory.select()} == {
        advisories.generation_in_force()
    }


def test_a_breached_cap_keeps_the_advisories_in_force(
    app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    update(app, write_folder(tmp_path / "first", DOCUMENTS))
    before = state()
    big = [*DOCUMENTS, record("GHSA-cccc-0000-0003", "third", summary="x" * 5000)]
    monkeypatch.setattr(osv_source, "TOTAL_CAP", 4000)
    result = run_cli(
        app, "advisories", "update", "--from", str(write_folder(tmp_path / "big", big))
    )
    assert result.exit_code == 1
    assert "nothing was changed" in result.output
    assert state() == before
    assert models.Advisory.select().count() == len(DOCUMENTS)


def test_a_killed_import_keeps_the_old_and_the_next_one_cleans_up(
    app: Flask, tmp_path: Path
) -> None:
    update(app, write_folder(tmp_path / "first", DOCUMENTS))
    before = state()

    def killed() -> Iterator[dict[str, Any]]:
        yield from DOCUMENTS[:1]
        yield from [record(f"GHSA-kill-0000-{n:04d}", "demo") for n in range(advisories.BATCH)]
        raise KeyboardInterrupt  # as far as the database knows, the process died here

    with pytest.raises(KeyboardInterrupt):
        advisories.update("killed", killed(), prune=True)
    assert state() == before
    # A real kill leaves the staged rows (no cleanup runs): the next import removes them.
    generation = advisories._start("killed for real")
    advisories._stage(generation, [advisories.osv.parse(record("GHSA-dead-0000-0001", "demo"))])
    assert state() == before
    update(app, write_folder(tmp_path / "again", DOCUMENTS))
    assert state() == before
    assert (
        models.AdvisoryImport.select().where(models.AdvisoryImport.finished.is_null()).count() == 0
    )
    assert models.Advisory.select().count() == len(DOCUMENTS)


def test_status_and_show(app: Flask, tmp_path: Path) -> None:
    assert "No advisories yet" in run_cli(app, "advisories", "status").output
    update(app, write_folder(tmp_path / "first", DOCUMENTS))
    status = run_cli(app, "advisories", "status").output
    assert "records\t3" in status
    shown = run_cli(app, "advisories", "show", "CVE-2026-1")
    assert shown.exit_code == 0
    assert "GHSA-aaaa-0000-0001 (high)" in shown.output
    missing = run_cli(app, "advisories", "show", "GHSA-none")
    assert missing.exit_code == 1


def test_health_is_degraded_when_the_advisories_are_old(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    assert client.get("/-/health").json["advisories_checked"] is None  # type: ignore[index]
    update(app, write_folder(tmp_path / "first", DOCUMENTS))
    # As if the last update ran 15 days ago (read by the next app: the status is kept 10 s).
    old = models.utcnow() - datetime.timedelta(days=15)
    models.AdvisoryImport.update(finished=old, checked=None).execute()
    settings = app.extensions["minirepo"].settings
    with served(settings) as later:
        health = later.test_client().get("/-/health")
    assert health.status_code == 200
    assert health.json["status"] == "degraded"  # type: ignore[index]
    assert health.json["problems"] == [  # type: ignore[index]
        "the advisories are 15 days old (advisories_max_age): run minirepo advisories update"
    ]
