"""A release's README (its core metadata's description) as sanitised HTML, for its page.

The text is the uploader's, so it is hostile: Markdown is rendered with raw HTML off,
reStructuredText with every directive that reads files or passes HTML through turned
off, and whatever comes out goes through nh3's allow-list before it reaches a page. The
result is kept in `models.ReadmeHtml`, so each release is rendered once (again only when
`RENDERER` changes). The three libraries are imported on the first render, never at start.
"""

from __future__ import annotations

import html
import io
import logging

import peewee

from minirepo import dists, models
from minirepo.config import Settings
from minirepo.db import write_transaction
from minirepo.errors import MinirepoError
from minirepo.storage import BlobStore

log = logging.getLogger(__name__)

# Part of every cached row: change it whenever the renderers, their settings or the
# allow-list change, and every README is rendered again on its next view.
RENDERER = "readme-1"
# Longer descriptions are shown as plain text, escaped: docutils needed 3 s for 128 KiB
# of sections and tables on a desktop CPU (markdown-it 1 s), a Pi several times that, and
# the first view waits for it. Typical READMEs are 5-30 KiB. The metadata cap (4 MiB by
# default) bounds the text itself.
MAX_MARKUP_CHARS = 128 * 1024
# ids a README brings get this prefix (and its `#fragment` links with them), so that
# none can clash with the page's own.
ID_PREFIX = "readme-"

_TAG_NAMES = (
    "a abbr b blockquote br caption cite code col colgroup dd del details div dl dt em "
    "h1 h2 h3 h4 h5 h6 hr i img ins kbd li ol p pre q s samp section small span strike "
    "strong sub summary sup table tbody td tfoot th thead tr tt ul var"
)
# Dropped with everything inside them (nh3 only unwraps a tag that is not allowed).
_DROPPED_NAMES = (
    "script style iframe object embed svg math template noscript textarea select title "
    "frameset frame applet form"
)
_ATTRIBUTES = {
    "*": {"id", "title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
    "ol": {"start"},
    "col": {"span"},
}
_URL_SCHEMES = frozenset({"http", "https", "mailto"})


def rendered(release: models.Release, store: BlobStore) -> str:
    """The release's README as sanitised HTML ("" when it has none), rendered on the
    first call and read from `ReadmeHtml` after that.

    Rendering happens outside any transaction; only storing the result takes the write
    lock. A README that cannot be read now (its file's blob is missing) is not cached."""
    cached = models.ReadmeHtml.get_or_none(models.ReadmeHtml.release == release.id)
    if cached is not None and cached.renderer == RENDERER:
        return str(cached.html)
    found = description(release.id, store)
    if found is None:
        return ""
    text, content_type = found
    result = render(text, content_type)
    _store(release.id, result)
    return result


def render(text: str, content_type: str) -> str:
    """`text` as sanitised HTML, by its Description-Content-Type (PyPI's rules: no type is
    reStructuredText; a type nobody renders is plain text)."""
    if not text.strip():
        return ""
    kind = content_type.split(";")[0].strip().lower()
    if len(text) > MAX_MARKUP_CHARS:
        body = _plain(text)
    elif kind == "text/markdown":
        body = _markdown(text)
    elif kind in ("", "text/x-rst"):
        body = _restructured(text)
    else:
        body = _plain(text)
    return sanitised(body)


def sanitised(fragment: str) -> str:
    """The allow-list every README passes, whatever produced it: no script, style, frame,
    form or event attribute; links to http, https, mailto or relative URLs only, marked
    nofollow; images from http(s) only; ids prefixed."""
    import nh3

    return nh3.clean(
        fragment,
        tags=set(_TAG_NAMES.split()),
        clean_content_tags=set(_DROPPED_NAMES.split()),
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        attribute_filter=_filter_attribute,
        url_schemes=set(_URL_SCHEMES),
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )


def _filter_attribute(tag: str, name: str, value: str) -> str | None:
    if name == "id":
        return ID_PREFIX + value
    if tag == "a" and name == "href" and value.startswith("#"):
        return "#" + ID_PREFIX + value[1:]
    if tag == "img" and name == "src" and not value.lower().startswith(("https://", "http://")):
        return None  # a relative image would load from this server, with its cookies
    return value


def _plain(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _markdown(text: str) -> str:
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": False, "linkify": False})
    html_text: str = parser.enable(["table", "strikethrough"]).render(text)
    return html_text


def _restructured(text: str) -> str:
    """docutils with every file, raw and config access off; any failure shows the text."""
    from docutils.core import publish_parts  # type: ignore[import-untyped]  # no stubs
    from docutils.writers.html5_polyglot import Writer  # type: ignore[import-untyped]

    settings = {
        "_disable_config": True,  # no docutils.conf from the server's folders
        "file_insertion_enabled": False,  # include, raw :file:, csv-table :file:
        "raw_enabled": False,
        "report_level": 5,  # no system messages in the output
        "halt_level": 5,  # never raise on a problem of the document
        "warning_stream": io.StringIO(),
        "input_encoding": "unicode",
        "output_encoding": "unicode",
        "syntax_highlight": "none",  # no pygments
        "doctitle_xform": False,  # the first title stays in the fragment
        "sectsubtitle_xform": False,
        "embed_stylesheet": False,
        "stylesheet_path": "",
        "math_output": "HTML",
    }
    try:
        parts = publish_parts(text, writer=Writer(), settings_overrides=settings)
    except Exception:  # docutils on hostile input: any bug of its own must not cost the page
        log.warning("reStructuredText README failed to render; shown as text", exc_info=True)
        return _plain(text)
    return str(parts["fragment"])


def description(release_id: int, store: BlobStore | None) -> tuple[str, str] | None:
    """(text, content type) from the release's stored core metadata, or for an old sdist
    (Metadata-Version before 2.2, none stored) from its PKG-INFO in `store`; None when
    no file can be read now. Without a store no archive is opened (a cheap answer)."""
    raw = _stored_metadata(release_id)
    if raw is None and store is not None:
        raw = _archive_metadata(release_id, store)
    if raw is None:
        return None
    from packaging.metadata import parse_email

    fields, _ = parse_email(raw)
    return fields.get("description", ""), fields.get("description_content_type", "")


def _stored_metadata(release_id: int) -> bytes | None:
    row = (
        models.FileMetadata.select(models.FileMetadata.content)
        .join(models.File)
        .where(models.File.release == release_id)
        .order_by(models.File.packagetype, models.File.id)  # a wheel's first
        .first()
    )
    return None if row is None else bytes(row.content)


def _archive_metadata(release_id: int, store: BlobStore) -> bytes | None:
    """The PKG-INFO of the release's first readable file, read within the upload caps."""
    files = models.File.select(models.File.filename, models.File.storage_key).where(
        models.File.release == release_id
    )
    for row in files.order_by(models.File.id):
        try:
            return _read_metadata(row, store)
        except (OSError, MinirepoError) as exc:  # its blob is gone, or the archive refused
            log.warning("no README from %s: %s", row.filename, exc)
    return None


def _read_metadata(row: models.File, store: BlobStore) -> bytes:
    dist = dists.parse_filename(row.filename)
    with store.open(row.storage_key) as handle:
        return dists.read_core_metadata_from(handle, dist, Settings.max_metadata_size).raw


def _store(release_id: int, result: str) -> None:
    """Insert or refresh the row; a release deleted meanwhile keeps none."""
    query = models.ReadmeHtml.insert(release=release_id, html=result, renderer=RENDERER)
    upsert = query.on_conflict(
        conflict_target=[models.ReadmeHtml.release],
        update={models.ReadmeHtml.html: result, models.ReadmeHtml.renderer: RENDERER},
    )
    try:
        with write_transaction():
            upsert.execute()
    except peewee.IntegrityError:
        log.info("release %d went while its README was rendered", release_id)
