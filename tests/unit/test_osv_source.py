"""Reading OSV exports: a zip, a folder, one file or a URL give the same documents, and a
hostile or mistaken source is refused with a UserError before it costs memory or disk.

The export is fetched from the network, so it is read as an upload is: counted and sized
from the zip's directory first (nothing staged yet), then read through a byte limit that a
lying header cannot lift. The caps are lowered here so that each refusal takes kilobytes.
"""

from __future__ import annotations

import functools
import json
import logging
import struct
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from benchmarks.osv_corpus import generate_records, write_zip
from minirepo import osv_source
from minirepo.errors import UserError
from minirepo.osv_source import ReadStats, open_source
from tests.helpers.distfactory import write_zip as write_members
from tests.helpers.serverproc import free_port

COUNT = 12
RECORDS = sorted(generate_records(COUNT, names=4, seed=7), key=lambda record: record["id"])


def read_all(source: Path | str, tmp: Path) -> tuple[list[dict[str, Any]], ReadStats]:
    with open_source(str(source), tmp) as (documents, stats):
        return list(documents), stats


def as_folder(folder: Path, members: dict[str, bytes]) -> Path:
    folder.mkdir()
    for name, data in members.items():
        (folder / name).write_bytes(data)
    return folder


def record_members() -> dict[str, bytes]:
    return {f"{record['id']}.json": json.dumps(record).encode() for record in RECORDS}


def test_zip_folder_and_files_give_the_same_documents(tmp_path: Path) -> None:
    """OSV's zip and a folder of the same files are whole exports; one file is not, so the
    caller must not retire advisories it does not list."""
    archive = write_zip(tmp_path / "all.zip", COUNT, names=4, seed=7)
    folder = as_folder(tmp_path / "osv", record_members())

    from_zip, zip_stats = read_all(archive, tmp_path)
    from_folder, folder_stats = read_all(folder, tmp_path)
    singles = [read_all(path, tmp_path) for path in sorted(folder.iterdir())]

    assert from_zip == from_folder == RECORDS
    assert [documents for documents, _ in singles] == [[record] for record in RECORDS]
    assert zip_stats == folder_stats == ReadStats(full=True, read=COUNT, bad=0)
    assert [stats for _, stats in singles] == [ReadStats(full=False, read=1, bad=0)] * COUNT


@pytest.mark.parametrize("layout", ["zip", "folder"])
def test_bad_members_are_skipped_counted_and_named_once(
    tmp_path: Path, layout: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One broken document must not stop the import; the log names it, never its bytes."""
    good = RECORDS[0]
    bad = {
        "latin1.json": b'{"id": "caf\xe9"}',
        "cut.json": b'{"id": "SECRET-BYTES"',
        "list.json": b"[1, 2]",
        "nan.json": b'{"id": "X", "score": NaN}',
        "huge.json": b'{"id": "X", "score": 1e999}',
        "deep.json": b"[" * 100_000 + b"]" * 100_000,
    }
    members = {"a.json": json.dumps(good).encode(), **bad, "README.md": b"not a document"}
    if layout == "zip":
        source = write_members(tmp_path / "all.zip", {**members, "sub/": b""})
    else:
        source = as_folder(tmp_path / "osv", members)
        (source / "dir.json").mkdir()  # a folder is not a document, whatever its name

    with caplog.at_level(logging.WARNING, logger="minirepo.osv_source"):
        documents, stats = read_all(source, tmp_path)

    assert documents == [good]
    assert stats == ReadStats(full=True, read=1, bad=len(bad))
    messages = [record.getMessage() for record in caplog.records]
    assert sorted(name for name in bad if any(name in message for message in messages)) == sorted(
        bad
    )
    assert len(messages) == len(bad)
    assert not any("SECRET" in message or "caf" in message for message in messages)


def test_member_over_cap_is_refused_from_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A declared size over the cap fails on entry, before the caller stages anything."""
    monkeypatch.setattr(osv_source, "MEMBER_CAP", 100)
    source = write_members(tmp_path / "all.zip", {"big.json": b'{"x": "%s"}' % (b"a" * 200)})
    with (
        pytest.raises(UserError, match=r"member 'big.json' of .* is over 100 B"),
        open_source(str(source), tmp_path),
    ):
        pytest.fail("entered a source with a member over the cap")


def test_a_member_with_a_lying_size_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zip bomb declares a small size (here 50 bytes for 2 000): zipfile stops there and
    its CRC check fails, a UserError rather than a bomb read or a document cut short."""
    monkeypatch.setattr(osv_source, "MEMBER_CAP", 100)
    path = write_members(tmp_path / "all.zip", {"bomb.json": b'{"x": "%s"}' % (b"a" * 2000)})
    data = bytearray(path.read_bytes())
    entry = data.rindex(b"PK\x01\x02")
    struct.pack_into("<L", data, entry + 24, 50)  # the uncompressed size
    path.write_bytes(bytes(data))

    with (
        pytest.raises(UserError, match=r"bomb\.json"),
        open_source(str(path), tmp_path) as (docs, _),
    ):
        list(docs)


@pytest.mark.parametrize(("cap", "value"), [("MEMBER_CAP", 10), ("TOTAL_CAP", 3000)])
@pytest.mark.parametrize("layout", ["zip", "folder"])
def test_caps_hold_while_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, cap: str, value: int
) -> None:
    """The bytes actually read are capped too: a file may grow after the directory or the
    listing was checked, and a header may lie in ways zipfile does not notice."""
    members = record_members()
    if layout == "zip":
        source = write_members(tmp_path / "all.zip", members)
    else:
        source = as_folder(tmp_path / "osv", members)
    with open_source(str(source), tmp_path) as (documents, _):
        monkeypatch.setattr(osv_source, cap, value)
        with pytest.raises(UserError, match=r"is over|more than"):
            list(documents)


@pytest.mark.parametrize("layout", ["zip", "folder"])
def test_count_and_total_caps_are_checked_on_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    members = record_members()
    if layout == "zip":
        source = write_members(tmp_path / "all.zip", members)
    else:
        source = as_folder(tmp_path / "osv", members)
    monkeypatch.setattr(osv_source, "COUNT_CAP", COUNT - 1)
    with pytest.raises(UserError, match=f"more than {COUNT - 1} "):
        read_all(source, tmp_path)
    monkeypatch.setattr(osv_source, "COUNT_CAP", COUNT)
    monkeypatch.setattr(osv_source, "TOTAL_CAP", 3000)
    with pytest.raises(UserError, match=r"more than 2\.93 KiB of documents"):
        read_all(source, tmp_path)


def test_a_file_that_is_neither_zip_nor_json_is_refused(tmp_path: Path) -> None:
    """Skipping it would import nothing and say nothing: one file is the whole source."""
    text = tmp_path / "notes.txt"
    text.write_text("not an export\n")
    with pytest.raises(UserError, match="is not an OSV document"):
        read_all(text, tmp_path)
    with pytest.raises(UserError, match="is not a file, a folder or a URL"):
        read_all(tmp_path / "missing.zip", tmp_path)


def test_a_folder_without_json_is_an_empty_export(tmp_path: Path) -> None:
    folder = as_folder(tmp_path / "osv", {"README.md": b"nothing here"})
    assert read_all(folder, tmp_path) == ([], ReadStats(full=True))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are the test's own: nothing to log."""


@pytest.fixture
def website(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A stdlib HTTP server on a free loopback port, serving a folder; no proxy between."""
    monkeypatch.setenv("no_proxy", "*")
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", root
        finally:
            server.shutdown()
            thread.join(timeout=10)


def test_a_url_is_downloaded_read_as_a_zip_and_removed(
    tmp_path: Path, website: tuple[str, Path]
) -> None:
    url, root = website
    write_zip(root / "all.zip", COUNT, names=4, seed=7)
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    assert read_all(f"{url}/all.zip", downloads) == (RECORDS, ReadStats(True, COUNT, 0))
    assert list(downloads.iterdir()) == []


def test_url_refusals(
    tmp_path: Path, website: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 404, a refused connection, a page that is not a zip and a download over the cap
    leave nothing behind."""
    url, root = website
    (root / "page.html").write_text("<html>moved</html>")
    write_zip(root / "all.zip", COUNT, names=4, seed=7)
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    with pytest.raises(UserError, match="answered 404"):
        read_all(f"{url}/missing.zip?token=secret", downloads)
    with pytest.raises(UserError, match="could not download"):
        read_all(f"http://127.0.0.1:{free_port()}/all.zip", downloads)
    with pytest.raises(UserError, match="not a zip archive"):
        read_all(f"{url}/page.html", downloads)
    monkeypatch.setattr(osv_source, "TOTAL_CAP", 100)
    with pytest.raises(UserError, match="more than 100 B") as caught:
        read_all(f"{url}/all.zip?token=secret", downloads)
    assert "secret" not in caught.value.reason
    assert list(downloads.iterdir()) == []
