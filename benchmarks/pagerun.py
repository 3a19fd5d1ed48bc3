"""What the page benchmarks share (`ui_pages`, `workers`, `stacks`): their common options
and the corpus of small projects they upload before measuring."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import corpus as corpus_mod
from benchmarks import servers


def parser(doc: str | None, name: str, *, seconds: float, repeats: int) -> argparse.ArgumentParser:
    """--projects, --versions, --seconds, --repeats, --threads, --json (benchmarks/NAME.json)
    and --cache; a benchmark adds its own after."""
    made = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    made.add_argument("--projects", type=int, default=500)
    made.add_argument("--versions", type=int, default=3)
    made.add_argument("--seconds", type=float, default=seconds)
    made.add_argument("--repeats", type=int, default=repeats)
    made.add_argument("--threads", type=int, default=8)
    made.add_argument("--json", type=Path, default=Path(f"benchmarks/{name}.json"))
    made.add_argument("--cache", type=Path, default=servers.cache_dir())
    return made


def build_corpus(args: argparse.Namespace) -> corpus_mod.Corpus:
    """--projects projects of --versions versions (wheel and sdist), no big file."""
    return corpus_mod.build(
        args.cache / f"corpus-{args.projects}-{args.versions}-full",
        args.projects,
        args.versions,
        0,
        sdists=True,
    )
