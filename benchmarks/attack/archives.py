"""The files the benchmark uploads: a big incompressible wheel, small wheels built in
memory, and the two archive bombs, cached because they take about 20 s to build."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

from tests.helpers.distfactory import Dist, escaped, sdist_members, wheel_members, write_zip

MIB = 1024**2
BOMB_MEMBERS = 400_000
# Incompressible bytes ahead of the sdist bomb's members keep its inflation under the 50x
# that marks a tar bomb, so a reader walks all its members instead of giving up early.
BOMB_NOISE = 4 * MIB
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def padded_wheel(folder: Path, dist: Dist, size: int) -> Path:
    """A wheel of `size` random bytes: no layer can shrink what it sends or stores."""
    members = wheel_members(dist)
    members[f"{dist.module}/padding.bin"] = os.urandom(size)
    return write_zip(folder / dist.wheel_name, members)


def wheel_bytes(dist: Dist) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in wheel_members(dist).items():
            archive.writestr(zipfile.ZipInfo(name, ZIP_DATE), data)
    return buffer.getvalue()


def wheel_bomb(path: Path) -> None:
    """Empty entries inflate to nothing, so only a bound on their count stops a reader from
    holding every entry's record in memory (~35 MiB on disk)."""
    partial = path.with_name(path.name + ".part")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, data in wheel_members(Dist("bomb-wheel", "1.0")).items():
            archive.writestr(zipfile.ZipInfo(name, ZIP_DATE), data)
        for number in range(BOMB_MEMBERS):
            archive.writestr(zipfile.ZipInfo(f"w/{number:06d}", ZIP_DATE), b"")
    partial.rename(path)


def sdist_bomb(path: Path) -> None:
    """PKG-INFO comes last, so a reader walks every member before it finds the metadata."""
    dist = Dist("bomb-sdist", "1.0")
    top = f"{escaped(dist.name)}-{dist.version}"
    partial = path.with_name(path.name + ".part")

    def add(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1_577_836_800
        archive.addfile(info, io.BytesIO(data))

    with tarfile.open(partial, "w:gz") as archive:
        add(f"{top}/noise.bin", os.urandom(BOMB_NOISE))
        for number in range(BOMB_MEMBERS):
            add(f"{top}/m/{number}", b"")
        for name, data in sdist_members(dist).items():
            add(name, data)
    partial.rename(path)


def cached_bombs(cache: Path) -> tuple[Path, Path]:
    """Built once (about 20 s) and kept: no run should wait for them twice."""
    folder = cache / f"attack-bombs-{BOMB_MEMBERS}"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / Dist("bomb-wheel", "1.0").wheel_name
    sdist = folder / Dist("bomb-sdist", "1.0").sdist_name
    for path, build in ((wheel, wheel_bomb), (sdist, sdist_bomb)):
        if not path.exists():
            print(f"building {path.name} (once) ...", flush=True)
            build(path)
    return wheel, sdist
