"""Reading a `devpi-export` folder: `dataindex.json` and the files it names.

devpi-server keeps its state in its own store; `devpi-export SERVERDIR EXPORTDIR` writes
the portable copy this module reads: users (with their password hashes), indexes (their
configuration: type, bases, ACLs) and, per index, each file's path in the folder and its
history (who uploaded or pushed it, and when). Only reading happens here, into plain
values; `services.import_devpi` decides what each becomes in minirepo.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import json
from pathlib import Path
from typing import Any

from minirepo.errors import UserError

INDEX_FILE = "dataindex.json"
# devpi-server 2.1 to 4 wrote version 1, later ones write 2 (devpi's own importer reads both).
DUMPVERSIONS = (1, 2)
ANONYMOUS = ":ANONYMOUS:"
AUTHENTICATED = ":AUTHENTICATED:"
RELEASE_FILE = "releasefile"
MIRROR = "mirror"
# Names devpi writes in a log entry's "who" that are no account.
NOBODY = frozenset({"<import>"})
# A log entry that put the file into an index (an upload, or a push from another index).
ARRIVALS = ("upload", "push")


@dataclasses.dataclass(frozen=True)
class DevpiUser:
    name: str
    pwhash: str | None  # None: no password in devpi (an LDAP account, say)
    # devpi-server before 6 stored sha256(salt + password) in hex beside this salt;
    # 6 and later store an argon2 hash (passlib's `$argon2id$…`) and no salt.
    pwsalt: str | None = None


@dataclasses.dataclass(frozen=True)
class DevpiFile:
    kind: str  # "releasefile" (a distribution), "doczip", "toxresult"
    project: str
    relpath: str  # as the export names it: user/index/project/version/filename
    path: Path  # inside the export folder
    upload_time: datetime.datetime  # timezone-aware UTC
    uploader: str | None  # a devpi user name, or None when devpi recorded nobody

    @property
    def is_distribution(self) -> bool:
        return self.kind == RELEASE_FILE


@dataclasses.dataclass(frozen=True)
class DevpiIndex:
    name: str  # "user/index"
    kind: str  # "stage" (uploads), "mirror" (a cache of another index), or a plugin's
    bases: tuple[str, ...]  # indexes whose projects this one also serves, in order
    acl_upload: tuple[str, ...]  # user names, or ":ANONYMOUS:", ":AUTHENTICATED:", ":GROUP"
    # Who may install, where a plugin restricts it (devpi-server itself lets anyone).
    acl_read: tuple[str, ...]
    title: str
    description: str
    mirror_url: str  # a mirror's upstream, else ""
    files: tuple[DevpiFile, ...]

    @property
    def owner(self) -> str:
        return self.name.partition("/")[0]

    @property
    def is_mirror(self) -> bool:
        return self.kind == MIRROR

    @property
    def is_public(self) -> bool:
        return ANONYMOUS in self.acl_read


@dataclasses.dataclass(frozen=True)
class DevpiExport:
    folder: Path
    dumpversion: int
    server_version: str  # "" for the old exports that did not record it
    users: tuple[DevpiUser, ...]
    indexes: tuple[DevpiIndex, ...]


def read_export(folder: Path) -> DevpiExport:
    """The export in `folder`; a UserError when it is not one, or not one this reads."""
    data = _load(folder)
    version = _dumpversion(data, folder)
    users = _object(data.get("users"), "users")
    indexes = _object(data.get("indexes"), "indexes")
    return DevpiExport(
        folder=folder,
        dumpversion=version,
        server_version=str(data.get("devpi_server") or ""),
        users=tuple(_user(name, entry) for name, entry in sorted(users.items())),
        indexes=tuple(_index(folder, name, entry) for name, entry in sorted(indexes.items())),
    )


def _load(folder: Path) -> dict[str, Any]:
    path = folder / INDEX_FILE
    hint = "make one with devpi-export --serverdir SERVERDIR EXPORTDIR, devpi-server stopped"
    try:
        with path.open("rb") as source:
            data = json.load(source)
    except FileNotFoundError as exc:
        raise UserError(f"{folder} is not a devpi export: it has no {INDEX_FILE} ({hint})") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} cannot be read as devpi's JSON: {exc}") from exc
    if not isinstance(data, dict) or "dumpversion" not in data:
        raise UserError(f"{path} is not a devpi export's index: it has no dumpversion ({hint})")
    return data


def _dumpversion(data: dict[str, Any], folder: Path) -> int:
    raw = data["dumpversion"]
    try:
        version = int(raw)
    except (TypeError, ValueError):
        version = None
    if version not in DUMPVERSIONS or isinstance(raw, bool):
        readable = " and ".join(str(v) for v in DUMPVERSIONS)
        raise UserError(
            f"{folder}: devpi export format {raw!r} is not one minirepo reads ({readable}, "
            "written by devpi-server 2.1 to 6): export again with such a devpi-server"
        )
    return int(raw)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{INDEX_FILE}: {where} is not a JSON object")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{INDEX_FILE}: {where} is not a string")
    return value


def _optional_text(value: Any, where: str) -> str | None:
    return None if value is None else _text(value, where)


def _names(value: Any, where: str) -> tuple[str, ...]:
    """An ACL or a list of bases: a JSON list, or the comma-separated string older
    devpi versions kept; devpi's special principals in its own upper case."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        raise UserError(f"{INDEX_FILE}: {where} is not a list")
    names = (_text(item, where).strip() for item in value)
    return tuple(_principal(name) for name in names if name)


def _principal(name: str) -> str:
    upper = name.upper()
    return upper if upper in (ANONYMOUS, AUTHENTICATED) else name


def _user(name: str, entry: Any) -> DevpiUser:
    config = _object(entry, f"user {name!r}")
    return DevpiUser(
        name=name,
        pwhash=_optional_text(config.get("pwhash"), f"user {name!r}'s pwhash"),
        pwsalt=_optional_text(config.get("pwsalt"), f"user {name!r}'s pwsalt"),
    )


def _index(folder: Path, name: str, entry: Any) -> DevpiIndex:
    where = f"index {name!r}"
    if name.count("/") != 1:
        raise UserError(f"{INDEX_FILE}: {where} is not named user/index")
    data = _object(entry, where)
    config = _object(data.get("indexconfig"), f"{where}'s indexconfig")
    kind = _text(config.get("type"), f"{where}'s type")
    files = data.get("files") or []
    if not isinstance(files, list):
        raise UserError(f"{INDEX_FILE}: {where}'s files is not a list")
    return DevpiIndex(
        name=name,
        kind=kind,
        bases=_names(config.get("bases"), f"{where}'s bases"),
        acl_upload=_names(config.get("acl_upload"), f"{where}'s acl_upload"),
        acl_read=_names(config.get("acl_read", [ANONYMOUS]), f"{where}'s acl_read"),
        title=_optional_text(config.get("title"), f"{where}'s title") or "",
        description=_optional_text(config.get("description"), f"{where}'s description") or "",
        mirror_url=_optional_text(config.get("mirror_url"), f"{where}'s mirror_url") or "",
        files=tuple(_file(folder, name, item) for item in files),
    )


def _file(folder: Path, index: str, entry: Any) -> DevpiFile:
    where = f"a file of index {index!r}"
    data = _object(entry, where)
    relpath = _text(data.get("relpath"), f"{where}'s relpath")
    path = (folder / relpath).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise UserError(f"{INDEX_FILE}: {relpath!r} ({where}) points outside {folder}")
    log = data.get("log") or []
    if not isinstance(log, list):
        raise UserError(f"{INDEX_FILE}: {relpath}'s log is not a list")
    mapping = data.get("entrymapping") or {}
    arrival = _arrival(index, log, relpath)
    if arrival is not None:
        uploaded, who = arrival
    else:
        uploaded, who = _last_modified(mapping, relpath) or _mtime(path), None
    return DevpiFile(
        kind=_text(data.get("type"), f"{relpath}'s type"),
        project=_text(data.get("projectname"), f"{relpath}'s projectname"),
        relpath=relpath,
        path=path,
        upload_time=uploaded,
        uploader=who,
    )


def _arrival(
    index: str, log: list[Any], relpath: str
) -> tuple[datetime.datetime, str | None] | None:
    """When the file came into `index` and by whom: the last upload or push there (a
    pushed file's log starts with its upload elsewhere; an overwrite names nobody)."""
    for entry in reversed(log):
        item = _object(entry, f"{relpath}'s log entry")
        if item.get("what") not in ARRIVALS or item.get("dst", index) != index:
            continue
        when = item.get("when")
        if not (isinstance(when, list) and len(when) == 6 and all(type(n) is int for n in when)):
            raise UserError(f"{INDEX_FILE}: {relpath}'s log has a time that is not 6 numbers")
        year, month, day, hour, minute, second = when
        try:
            moment = datetime.datetime(
                year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc
            )
        except ValueError as exc:
            raise UserError(f"{INDEX_FILE}: {relpath}'s log has an impossible time") from exc
        who = item.get("who")
        return moment, who if isinstance(who, str) and who not in NOBODY else None
    return None


def _last_modified(mapping: Any, relpath: str) -> datetime.datetime | None:
    """devpi's `last_modified`, an HTTP date: when the file was first stored."""
    value = _object(mapping, f"{relpath}'s entrymapping").get("last_modified")
    if not isinstance(value, str):
        return None
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def _mtime(path: Path) -> datetime.datetime:
    """The last resort, for an old export with neither a log nor a date."""
    try:
        stamp = path.stat().st_mtime
    except OSError:
        stamp = 0.0  # a missing file is refused when it is imported, by its name
    return datetime.datetime.fromtimestamp(stamp, tz=datetime.timezone.utc)
