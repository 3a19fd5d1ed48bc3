"""The search index of each backend: its table, the triggers that keep it, and its fill.

One row per project that has a release: its name, the name without separators (so
"alicepkg" finds "alice-pkg"), and the summary and keywords of its latest release (by
upload order). Triggers keep it, so every path that writes projects or releases (upload,
delete, retention, import, a proxy's fetch, a repository deleted with its projects,
`migrate-data`'s row copy) keeps it right with no code of its own. `services.search`
asks it; both backends give the same answers to its tests.

- SQLite: an FTS5 table (rowid = project.id), ranked by bm25.
- PostgreSQL: a `tsvector` per project under a GIN index, with the `simple` configuration
  (no stemming, no stop words: names are not English) and prefix queries, ranked by
  `ts_rank` with the same weights; built-in, so no extension and no superuser (a managed
  PostgreSQL allows it). Unlike SQLite's, it keeps diacritics (that takes `unaccent`, an
  extension): "cafe" does not find "café".
"""

from __future__ import annotations

import peewee

TABLE = "project_search"

_SQLITE_INDEX_PROJECTS = (
    "INSERT INTO project_search (rowid, name, compact, summary, keywords) "
    "SELECT p.id, p.name, replace(p.normalized, '-', ''), r.summary, "
    "coalesce((SELECT group_concat(k.value, ' ') FROM json_each(CASE WHEN "
    "json_valid(r.metadata_json) THEN r.metadata_json ELSE '{{}}' END, '$.keywords') k), '') "
    'FROM "project" p JOIN "release" r ON r.id = (SELECT id FROM "release" '
    "WHERE project_id = p.id ORDER BY created DESC, id DESC LIMIT 1){where}"
)


def _sqlite_reindex(project: str) -> str:
    """The statements that make `project`'s row right again, whatever changed."""
    return (  # `project` is a column of the trigger's row (new.id), never a value
        f"DELETE FROM project_search WHERE rowid = {project}; "  # noqa: S608
        f"{_SQLITE_INDEX_PROJECTS.format(where=f' WHERE p.id = {project}')};"
    )


SQLITE_DDL = (
    "CREATE VIRTUAL TABLE project_search USING fts5("
    "name, compact, summary, keywords, tokenize = 'unicode61 remove_diacritics 2', "
    "prefix = '1 2 3 4')",
    # Ranked by bm25 with these weights of name, compact name, summary and keywords.
    "INSERT INTO project_search (project_search, rank) VALUES ('rank', 'bm25(10, 10, 1, 4)')",
    'CREATE TRIGGER project_search_drop AFTER DELETE ON "project" BEGIN '
    "DELETE FROM project_search WHERE rowid = old.id; END",
    'CREATE TRIGGER project_search_rename AFTER UPDATE OF name, normalized ON "project" BEGIN '
    f"{_sqlite_reindex('new.id')} END",
    'CREATE TRIGGER project_search_release_add AFTER INSERT ON "release" BEGIN '
    f"{_sqlite_reindex('new.project_id')} END",
    'CREATE TRIGGER project_search_release_drop AFTER DELETE ON "release" BEGIN '
    f"{_sqlite_reindex('old.project_id')} END",
    "CREATE TRIGGER project_search_release_change AFTER UPDATE OF "
    'project_id, summary, metadata_json, created ON "release" BEGIN '
    f"{_sqlite_reindex('old.project_id')} {_sqlite_reindex('new.project_id')} END",
)
SQLITE_FILL = _SQLITE_INDEX_PROJECTS.format(where="")

# PostgreSQL: weights A (name, compact name), B (keywords), C (summary); `RANK_WEIGHTS`
# gives them in ts_rank's order {D, C, B, A}, as SQLite's bm25 weighs them (10, 4, 1).
RANK_WEIGHTS = "{0, 0.1, 0.4, 1}"
CONFIG = "simple"
_MAX_TEXT = 10000  # characters of a summary or keywords indexed (a tsvector holds 1 MB)

_PG_DOCUMENT = (
    "setweight(to_tsvector('simple', p.name), 'A') || "
    "setweight(to_tsvector('simple', replace(p.normalized, '-', '')), 'A') || "
    f"setweight(to_tsvector('simple', left(minirepo_keywords(r.metadata_json), {_MAX_TEXT})), "
    "'B') || "
    f"setweight(to_tsvector('simple', left(r.summary, {_MAX_TEXT})), 'C')"
)
_PG_INDEX_PROJECTS = (
    "INSERT INTO project_search (project_id, document) SELECT p.id, {document} "
    'FROM "project" p JOIN "release" r ON r.id = (SELECT id FROM "release" '
    "WHERE project_id = p.id ORDER BY created DESC, id DESC LIMIT 1){where}"
)

POSTGRES_DDL = (
    "CREATE TABLE project_search (project_id integer PRIMARY KEY "
    'REFERENCES "project" (id) ON DELETE CASCADE, document tsvector NOT NULL)',
    "CREATE INDEX project_search_document ON project_search USING gin (document)",
    # The keywords of a release's metadata JSON as one text; '' for JSON that is broken
    # (an upload must never fail on its index) or has none.
    "CREATE FUNCTION minirepo_keywords(metadata text) RETURNS text "
    "LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
    "RETURN coalesce((SELECT string_agg(k #>> '{}', ' ') "
    "FROM jsonb_path_query(metadata::jsonb, 'lax $.keywords[*]') k), ''); "
    "EXCEPTION WHEN others THEN RETURN ''; END $$",
    # One project's row made right again. The project row is locked first (NO KEY
    # UPDATE does not wait for the foreign keys' share locks of uploads), so two
    # transactions writing releases of one project take turns, and the second, in a
    # statement after the wait, reads what the first committed: the latest release wins.
    "CREATE FUNCTION project_search_reindex(pid integer) RETURNS void "  # noqa: S608 - constants
    "LANGUAGE plpgsql AS $$ BEGIN "
    'PERFORM 1 FROM "project" WHERE id = pid FOR NO KEY UPDATE; '
    "DELETE FROM project_search WHERE project_id = pid; "
    f"{_PG_INDEX_PROJECTS.format(document=_PG_DOCUMENT, where=' WHERE p.id = pid')}; END $$",
    "CREATE FUNCTION project_search_project() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "PERFORM project_search_reindex(new.id); RETURN NULL; END $$",
    "CREATE FUNCTION project_search_release() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF tg_op <> 'INSERT' THEN PERFORM project_search_reindex(old.project_id); END IF; "
    "IF tg_op = 'INSERT' OR (tg_op = 'UPDATE' AND new.project_id <> old.project_id) THEN "
    "PERFORM project_search_reindex(new.project_id); END IF; RETURN NULL; END $$",
    # A deleted project's row goes by the foreign key's cascade.
    'CREATE TRIGGER project_search_rename AFTER UPDATE OF name, normalized ON "project" '
    "FOR EACH ROW EXECUTE FUNCTION project_search_project()",
    "CREATE TRIGGER project_search_release AFTER INSERT OR DELETE OR UPDATE OF "
    'project_id, summary, metadata_json, created ON "release" '
    "FOR EACH ROW EXECUTE FUNCTION project_search_release()",
)
POSTGRES_FILL = _PG_INDEX_PROJECTS.format(document=_PG_DOCUMENT, where="")


def create(handle: peewee.Database) -> None:
    """The backend's search index and its triggers, filled from the existing rows (inside
    the caller's schema transaction)."""
    statements: tuple[str, ...]
    if isinstance(handle, peewee.SqliteDatabase):
        statements = (*SQLITE_DDL, SQLITE_FILL)
    else:
        statements = (*POSTGRES_DDL, POSTGRES_FILL)
    for statement in statements:
        handle.execute_sql(statement)  # type: ignore[no-untyped-call]
