"""Small OSV records the advisory tests write themselves (no network, no real export)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MODIFIED = "2026-01-01T00:00:00Z"


def record(
    osv_id: str,
    package: str,
    *,
    introduced: str = "0",
    fixed: str | None = None,
    last_affected: str | None = None,
    versions: Iterable[str] = (),
    severity: str | None = None,
    aliases: Iterable[str] = (),
    modified: str = MODIFIED,
    withdrawn: str | None = None,
    summary: str = "",
) -> dict[str, Any]:
    """One PyPI advisory: one ECOSYSTEM range from `introduced` to `fixed` (or up to
    `last_affected`), `severity` as GitHub's label (LOW, MODERATE, HIGH, CRITICAL)."""
    events: list[dict[str, str]] = [{"introduced": introduced}]
    if fixed is not None:
        events.append({"fixed": fixed})
    if last_affected is not None:
        events.append({"last_affected": last_affected})
    document: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": osv_id,
        "modified": modified,
        "published": MODIFIED,
        "aliases": list(aliases),
        "summary": summary or f"{osv_id} in {package}",
        "details": f"A flaw in {package}.",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
                "versions": list(versions),
            }
        ],
    }
    if severity is not None:
        document["database_specific"] = {"severity": severity}
    if withdrawn is not None:
        document["withdrawn"] = withdrawn
    return document


def write_folder(folder: Path, documents: Iterable[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for document in documents:
        (folder / f"{document['id']}.json").write_text(json.dumps(document))
    return folder


def write_zip(path: Path, documents: Iterable[dict[str, Any]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for document in documents:
            archive.writestr(f"{document['id']}.json", json.dumps(document))
    return path
