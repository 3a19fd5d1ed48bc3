"""Search on 10 000 projects (issue 17's target: p99 <= 50 ms), through a real server.

    python -m benchmarks.search [--projects 10000] [--requests 1000] [--database URL]

The projects are written straight into a new data folder (rows through the models, in
one transaction: the search index's triggers fill it as uploads would), half in `main`,
half in a private `team` the measured account may read, each with a summary and
keywords from a small vocabulary. Then one `minirepo serve` (this checkout, as the tests
start it) answers `--requests` searches in turn, varied queries from one client (a name,
a name prefix, a common and a rare word, two words, a miss), as JSON and as the page;
the rows are p50 and p99 of each, from the client's side (keep-alive connection).
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import requests

from minirepo import models
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.services import accounts, repos
from minirepo.services.container import Services
from tests.helpers.serverproc import FAST_HASH, running_server

TARGET_P99_MS = 50.0
VOCABULARY = (
    "http client server async json yaml parser toolkit data frame plot image audio crypto "
    "auth token cache queue worker schedule config logging metrics test mock fixture cli "
    "shell network socket database orm sql migrate template render web"
)
WORDS = VOCABULARY.split()
QUERIES = (
    "proj-00042",  # a whole name
    "proj-012",  # a name prefix: many
    "http",  # a common word
    "json parser",  # two words
    "schedul",  # a prefix of a word
    "zzzzzz",  # nothing
    "web toolkit cache",
    "proj",  # everything
)


def fill(data: Path, projects: int, database: str) -> None:
    settings = Settings(data=data, database=database, password_hash=FAST_HASH, upstream="")
    app = create_app(settings)
    services: Services = app.extensions["minirepo"]
    rng = random.Random(17)  # noqa: S311 (made-up summaries)
    with services.folder.database.activated():
        accounts.add_user("bench", "bench-password-1", method=FAST_HASH)
        team = repos.create("team", read="authenticated")
        repos.grant("bench", "team", "reader")
        main = repos.get("main")
        with services.folder.database.write_transaction():
            for start in range(0, projects, 500):
                batch = range(start, min(projects, start + 500))
                models.Project.insert_many(
                    {
                        "repository": main.id if n % 2 else team.id,
                        "name": f"Proj-{n:05}",
                        "normalized": f"proj-{n:05}",
                    }
                    for n in batch
                ).execute()
                ids = {
                    str(p.normalized): p.id
                    for p in models.Project.select().where(
                        models.Project.normalized.in_([f"proj-{n:05}" for n in batch])
                    )
                }
                models.Release.insert_many(
                    {
                        "project": ids[f"proj-{n:05}"],
                        "version": "1.0",
                        "canonical_version": "1",
                        "summary": " ".join(rng.sample(WORDS, 5)),
                        "metadata_json": f'{{"keywords": ["{rng.choice(WORDS)}"]}}',
                    }
                    for n in batch
                ).execute()
    services.folder.database.close()


def timed(session: requests.Session, url: str, params: dict[str, str]) -> float:
    start = time.perf_counter()
    response = session.get(url, params=params, timeout=30)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--database", default="", help="a PostgreSQL URL (empty: SQLite)")
    args = parser.parse_args()
    with TemporaryDirectory() as folder:
        work = Path(folder)
        started = time.perf_counter()
        fill(work / "repo", args.projects, args.database)
        print(f"{args.projects} projects written in {time.perf_counter() - started:.1f} s")
        settings = {"MINIREPO_LOG_LEVEL": "warning", "MINIREPO_UPSTREAM": ""}
        if args.database:
            settings["MINIREPO_DATABASE"] = args.database
        with running_server(work, settings) as server, requests.Session() as session:
            session.auth = ("bench", "bench-password-1")
            url = f"{server.url}/-/search"
            check = session.get(url, params={"q": "proj-00042", "format": "json"}).json()
            assert check["total"] == 1, check
            for kind, extra in (("json", {"format": "json"}), ("page", {})):
                queries = itertools.islice(itertools.cycle(QUERIES), args.requests)
                times = sorted(timed(session, url, {"q": q, **extra}) for q in queries)
                p50 = statistics.median(times)
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                verdict = "ok" if p99 <= TARGET_P99_MS else "OVER TARGET"
                print(f"search {kind:4}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({verdict})")


if __name__ == "__main__":
    main()
