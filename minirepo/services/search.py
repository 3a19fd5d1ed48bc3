"""Search over project names and their latest release's summary and keywords.

The caller decides what may be searched: it passes the ids of the repositories the viewer
may read (never a group: its members are searched), so a private project cannot leak
from here. The index `project_search` (kept by triggers, `search_index`) finds and ranks
the matches: FTS5 on SQLite, a `tsvector` under a GIN index on PostgreSQL.

A query never reaches SQL as syntax: it is cut into words (letters and digits), each
matched as a prefix, all of them required. Quotes, FTS operators, NUL or a megabyte of
text give at most `MAX_WORDS` harmless words.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Sequence

import peewee

from minirepo import models, search_index
from minirepo.db import current, rows
from minirepo.services import listing, repos
from minirepo.services.repos import RepoInfo

MAX_WORDS = 8
MAX_WORD = 64  # characters; longer words are cut (a name is rarely longer)
MAX_QUERY = 1000  # characters read from the query at all
_WORD = re.compile(r"[^\W_]+")


@dataclasses.dataclass(frozen=True)
class Hit:
    repository: str
    name: str
    normalized: str
    version: str
    summary: str


@dataclasses.dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    total: int


def words(query: str) -> list[str]:
    """The words a query asks for, lower-case, at most MAX_WORDS of MAX_WORD characters."""
    found = _WORD.findall(query[:MAX_QUERY].lower())
    return [word[:MAX_WORD] for word in dict.fromkeys(found)][:MAX_WORDS]


def search(
    query: str,
    repo_ids: Sequence[int],
    *,
    limit: int,
    offset: int = 0,
    projects: Collection[str] | None = None,
) -> SearchResult:
    """The projects of `repo_ids` matching every word of `query`, best first.

    `projects`, when given, limits the hits to those normalized names (a token scoped to
    projects reads only them)."""
    asked = words(query)
    if not asked or not repo_ids or (projects is not None and not projects):
        return SearchResult([], 0)
    if current().is_sqlite:
        matches, order = _fts_matches(asked)
    else:
        matches, order = _tsvector_matches(asked)
    matches = matches.where(models.Project.repository.in_(list(repo_ids)))
    if projects is not None:
        matches = matches.where(models.Project.normalized.in_(sorted(projects)))
    total = int(matches.count())
    if total == 0 or offset >= total:
        return SearchResult([], total)
    page = matches.select(models.Project.id).order_by(*order).limit(limit).offset(offset)
    ids = [int(row[0]) for row in rows(page.tuples())]
    return SearchResult(_hits(ids), total)


def _fts_matches(asked: list[str]) -> tuple[peewee.ModelSelect[models.Project], list[peewee.Node]]:
    """SQLite: projects whose index row holds every word as a prefix, best first."""
    index = peewee.Table(search_index.TABLE).alias(search_index.TABLE)
    expression = " ".join(f'"{word}"*' for word in asked)  # words hold no quote: safe
    rank = index.c.rank  # bm25, weighted as `search_index` configures it
    matches = (
        models.Project.select()
        .join(index, on=(index.c.rowid == models.Project.id))
        .where(peewee.SQL(f"{search_index.TABLE} MATCH ?", [expression]))
    )
    return matches, [rank, models.Project.normalized, models.Project.id]


def _tsvector_matches(
    asked: list[str],
) -> tuple[peewee.ModelSelect[models.Project], list[peewee.Node]]:
    """PostgreSQL: projects whose document holds every word as a prefix, best first."""
    index = peewee.Table(search_index.TABLE)
    # Words are letters and digits only, so none is a tsquery operator; the text goes in
    # as a bound value.
    query = peewee.fn.to_tsquery(search_index.CONFIG, " & ".join(f"{w}:*" for w in asked))
    weights = peewee.SQL("%s::float4[]", [search_index.RANK_WEIGHTS])
    rank = peewee.fn.ts_rank(weights, index.c.document, query)
    matches = (
        models.Project.select()
        .join(index, on=(index.c.project_id == models.Project.id))
        .where(peewee.NodeList((index.c.document, peewee.SQL("@@"), query)))
    )
    return matches, [rank.desc(), models.Project.normalized, models.Project.id]


def _hits(ids: list[int]) -> list[Hit]:
    """The page's projects with their repository and latest release (the one the
    repository page shows: `listing.latest_releases`), in `ids`' order."""
    query = (
        models.Project.select(
            models.Project.id,
            models.Project.name,
            models.Project.normalized,
            models.Repository.name,
        )
        .join(models.Repository)
        .where(models.Project.id.in_(ids))
        .tuples()
    )
    latest = listing.latest_releases(ids)
    found = {}
    for project_id, name, normalized, repository in rows(query):
        version, summary = latest.get(int(project_id), ("", ""))
        found[int(project_id)] = Hit(
            repository=str(repository),
            name=str(name),
            normalized=str(normalized),
            version=version,
            summary=summary,
        )
    return [found[project_id] for project_id in ids if project_id in found]


def searchable() -> list[RepoInfo]:
    """The repositories that hold projects (hosted and proxies; a group holds none of
    its own): the caller keeps those its viewer may read."""
    hosting = models.Repository.select().where(models.Repository.kind != "group")
    return [repos.info_of(row) for row in hosting.order_by(models.Repository.name)]
