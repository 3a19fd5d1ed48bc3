"""Deterministic benchmark corpus: P projects by V versions, a dependency chain, a big wheel.

No build backend runs: wheels and sdists are written directly (tests/helpers/distfactory.py), so
the same arguments always give byte-identical files, on every machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import zipfile
from pathlib import Path

from tests.helpers.distfactory import Dist, escaped, make_sdist, make_wheel, wheel_members

CHAIN_LENGTH = 20


@dataclasses.dataclass(frozen=True)
class Corpus:
    root: Path
    projects: list[str]
    files: list[Path]
    chain: list[str]
    big_wheel: Path | None

    @property
    def chain_top(self) -> str:
        return self.chain[0]


def project_names(count: int) -> list[str]:
    return [f"bench-{index:05d}" for index in range(count)]


def chain_names() -> list[str]:
    return [f"chain-{index:02d}" for index in range(CHAIN_LENGTH)]


def _chain_dists() -> list[Dist]:
    names = chain_names()
    return [
        Dist(name, "1.0", requires_dist=(f"{names[i + 1]}>=1.0",) if i + 1 < len(names) else ())
        for i, name in enumerate(names)
    ]


def make_big_wheel(folder: Path, size_mb: int) -> Path:
    """A wheel with one stored (uncompressed) member of `size_mb` MiB of seeded noise."""
    dist = Dist("big-wheel", "1.0")
    path = folder / dist.wheel_name
    rng = random.Random(1234)  # noqa: S311 - reproducible filler, not a secret
    block = rng.randbytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in wheel_members(dist).items():
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
        info = zipfile.ZipInfo(f"{escaped(dist.name)}/blob.bin", (2020, 1, 1, 0, 0, 0))
        with archive.open(info, "w", force_zip64=True) as member:
            for _ in range(size_mb):
                member.write(block)
    return path


def build(
    root: Path, projects: int, versions: int, big_mb: int = 100, sdists: bool = True
) -> Corpus:
    """Write the corpus below `root` (reused when already there with the same shape)."""
    files_dir = root / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    names = project_names(projects)
    files: list[Path] = []
    for name in names:
        for minor in range(versions):
            dist = Dist(name, f"1.{minor}", requires_python=">=3.8")
            makers = [(make_wheel, dist.wheel_name)]
            if sdists:
                makers.append((make_sdist, dist.sdist_name))
            for maker, filename in makers:
                path = files_dir / filename
                files.append(path if path.exists() else maker(files_dir, dist))
    chain_dir = root / "chain"
    chain_dir.mkdir(exist_ok=True)
    chain_files = [
        (chain_dir / dist.wheel_name)
        if (chain_dir / dist.wheel_name).exists()
        else make_wheel(chain_dir, dist)
        for dist in _chain_dists()
    ]
    big = None
    if big_mb:
        big_dir = root / "big"
        big_dir.mkdir(exist_ok=True)
        existing = big_dir / Dist("big-wheel", "1.0").wheel_name
        big = existing if existing.exists() else make_big_wheel(big_dir, big_mb)
    return Corpus(root, names, files + chain_files, chain_names(), big)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=100)
    args = parser.parse_args()
    corpus = build(args.root, args.projects, args.versions, args.big_mb)
    print(f"{len(corpus.files)} files in {corpus.root}")


if __name__ == "__main__":
    main()
