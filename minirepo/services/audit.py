"""The audit log: who changed what, newest first.

Written inside the transaction of the change it records, so a change and its line commit
or roll back together. Never holds a secret: tokens appear by their public prefix.
"""

from __future__ import annotations

import dataclasses
import datetime

from minirepo import models


@dataclasses.dataclass(frozen=True)
class Entry:
    time: datetime.datetime
    actor: str
    action: str
    repository: str
    project: str
    filename: str
    remote_addr: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        row = dataclasses.asdict(self)
        row["time"] = self.time.strftime("%Y-%m-%dT%H:%M:%SZ")
        return row


def record(
    actor: str,
    action: str,
    *,
    repository: str = "",
    project: str = "",
    filename: str = "",
    detail: str = "",
    remote_addr: str = "",
) -> None:
    """Call inside the write transaction of the change."""
    models.Event.create(
        actor=actor,
        action=action,
        repository=repository,
        project=project,
        filename=filename,
        detail=detail,
        remote_addr=remote_addr,
    )


def entries(
    repository: str | None = None,
    since: datetime.datetime | None = None,
    limit: int = 1000,
    *,
    actor: str | None = None,
    action: str | None = None,
    project: str | None = None,
    offset: int = 0,
) -> list[Entry]:
    """`action` matches from its start, so `user` finds every `user …` event."""
    query = models.Event.select()
    if repository is not None:
        query = query.where(models.Event.repository == repository)
    if since is not None:
        query = query.where(models.Event.time >= since)
    if actor is not None:
        query = query.where(models.Event.actor == actor)
    if action is not None:
        query = query.where(models.Event.action.startswith(action))
    if project is not None:
        query = query.where(models.Event.project == project)
    query = query.order_by(models.Event.time.desc(), models.Event.id.desc())
    query = query.limit(limit).offset(offset)
    return [
        Entry(
            row.time,
            row.actor,
            row.action,
            row.repository,
            row.project,
            row.filename,
            row.remote_addr,
            row.detail,
        )
        for row in query
    ]
