"""Small box (issue 16): what minirepo costs on a Raspberry Pi-sized machine.

    python -m benchmarks.footprint                  # ~1.5 minutes with the corpus cached
    python -m benchmarks.footprint --starts 3 --seconds 3 --projects 50 --versions 1 --big-mb 10

What it measures, and how:

1. Installed size. The wheel of this checkout (its tracked and untracked, not ignored
   files as they are now, copied to a temp folder; with `--ref`, a commit's) is built
   with `pip wheel --no-deps` and installed with its runtime dependencies into a fresh
   venv with `--no-compile`; each distribution's size is the sum of the files its RECORD
   lists, then again with the bytecode `compileall` writes for its `.py` files (what a
   plain `pip install` leaves). For each runtime dependency PyPI's JSON API
   (`/pypi/<name>/<version>/json`, the installed version; `/pypi/<name>/json`'s releases
   where that one answers 404) says whether it has a `py3-none-any` wheel (pure Python)
   and which CPythons have manylinux or musllinux `aarch64` and `armv7l` wheels; PyPI out
   of reach shows "unknown".
2. Start to first answer: that venv's `minirepo serve` (log level warning), started
   `--starts` times on an empty data folder (a new one each time) and on a populated one
   (the benchmark corpus, P x V wheels and sdists, plus `benchmarks/population.py`: 50
   repositories, 500 users, 2 000 grants, 5 000 tokens), from `Popen` until `/simple/`
   answers; the median.
3. Idle RSS after each of those starts, once the server has used under 2 % of a CPU for
   0.5 s (at most 10 s); the median.
4. RSS under a bounded read load (wrk, `--connections`, `--seconds`, on `/simple/` and 50
   project pages of the populated folder; the peak, sampled every 10 ms), then the peak
   during the upload of a `--big-mb` MiB wheel over the legacy upload API.

Every server runs with its default settings (8 threads) on CPU 0 (`taskset -c 0`), wrk on
CPU 1, and, where this machine allows it, in a memory cgroup of its own limited to
`--memory-mib` MiB (256): `systemd-run --scope -p MemoryMax=...`, else a cgroup v2 folder,
else a cgroup v1 memory folder, each made below this process's own cgroup and removed
after; the output says which, or that none could be had and the run went without. Only
loopback addresses get load; every loop is bounded in count and time.

Targets (issue 16): start to first answer <= 0.25 s, idle RSS after start <= 40 MiB, RSS
under the read load <= 60 MiB; a runtime dependency is pure Python or has aarch64 and
armv7l wheels. The other figures are shown for information. It prints the table and
writes it as JSON to `benchmarks/footprint.json` (git-ignored); the exit status is 1 when
a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename

from benchmarks import corpus as corpus_mod
from benchmarks import load, servers
from tests.helpers.distfactory import Dist
from tests.helpers.serverproc import TOKEN_RE, base_env, free_port, wait_answering

START_SECONDS = 0.25
IDLE_RSS_MIB = 40.0
LOAD_RSS_MIB = 60.0
DISTRIBUTION = "minirepo-server"
PYPI_JSON = "https://pypi.org/pypi/{name}/{version}/json"
# Where the per-release document is not served (404), the project's lists every release.
PYPI_PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
PYPI_SECONDS = 60.0  # all PyPI look-ups together; past it the rest are "unknown"
USER, PASSWORD = "bench", "bench-password-1"
DEFAULT_JSON = Path(__file__).resolve().parent / "footprint.json"

# Run in the fresh venv: the runtime closure of minirepo-server (markers evaluated there,
# extras left out) and, for each distribution, the files its RECORD lists.
SIZE_SCRIPT = r"""
import importlib.metadata, importlib.util, json, os, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

dists = {canonicalize_name(d.metadata["Name"]): d for d in importlib.metadata.distributions()}
closure, todo = [], [canonicalize_name(sys.argv[1])]
while todo:
    name = todo.pop(0)
    if name in closure or name not in dists:
        continue
    closure.append(name)
    for text in dists[name].requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            todo.append(canonicalize_name(requirement.name))
out = []
for name in closure:
    dist = dists[name]
    size = pyc = count = 0
    sources = []
    for entry in dist.files or []:
        if "__pycache__" in entry.parts:
            continue
        path = str(entry.locate())
        try:
            size += os.stat(path).st_size
        except OSError:
            continue
        count += 1
        if path.endswith(".py"):
            sources.append(path)
            try:
                pyc += os.stat(importlib.util.cache_from_source(path)).st_size
            except OSError:
                pass
    out.append({"name": dist.metadata["Name"], "version": dist.version, "bytes": size,
                "pyc_bytes": pyc, "files": count, "sources": sources})
print(json.dumps(out))
"""


# ---------------------------------------------------------------------------- the table


@dataclasses.dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    limit: float | None = None  # a target: value <= limit
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.limit is None:
            return "info"
        if self.value is None:
            return "FAIL"
        return "PASS" if self.value <= self.limit else "FAIL"

    def cells(self) -> tuple[str, str, str]:
        value = "-" if self.value is None else f"{_fmt(self.value)} {self.unit}"
        target = "-" if self.limit is None else f"<= {_fmt(self.limit)} {self.unit}"
        return value, target, self.verdict


def _fmt(number: float) -> str:
    if number == 0 or abs(number) >= 100:
        return f"{number:.0f}"
    if abs(number) >= 10:
        return f"{number:.1f}"
    return f"{number:.3g}" if abs(number) >= 1 else f"{number:.3f}"


def _mib(size: float) -> float:
    return size / 1024**2


# ---------------------------------------------------------------- the memory limit


@dataclasses.dataclass
class Cell:
    """One server's memory cgroup: a command prefix or a pre-exec step that enters it."""

    prefix: list[str] = dataclasses.field(default_factory=list)
    folder: Path | None = None
    version: int = 0

    def enter(self) -> None:
        """In the child between fork and exec (no other thread runs in this process at a
        launch): move it into the cgroup before the server allocates anything."""
        if self.folder is not None:
            fd = os.open(self.folder / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)

    def peak_mib(self) -> float | None:
        """The cgroup's peak charge (RSS plus page cache), where the kernel tells it."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        with contextlib.suppress(OSError, ValueError, TypeError):
            return _mib(int((self.folder / name).read_text()))  # type: ignore[operator]
        return None

    def oom_kills(self) -> int | None:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        with contextlib.suppress(OSError, TypeError):
            text = (self.folder / name).read_text()  # type: ignore[operator]
            match = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
            return int(match.group(1)) if match else None
        return None


class Confinement:
    """How each server is held to the memory limit, found once by trying each way."""

    def __init__(
        self,
        how: str,
        limit: int,
        prefix: list[str] | None = None,
        parent: Path | None = None,
        version: int = 0,
    ) -> None:
        self.how = how
        self.limit = limit
        self.prefix = prefix or []
        self.parent = parent
        self.version = version
        self._count = 0

    @property
    def active(self) -> bool:
        return bool(self.prefix) or self.parent is not None

    @contextlib.contextmanager
    def cell(self) -> Iterator[Cell]:
        if self.parent is None:
            yield Cell(prefix=list(self.prefix))
            return
        self._count += 1
        folder = _make_cgroup(
            self.parent, f"minirepo-footprint-{os.getpid()}-{self._count}", self.version, self.limit
        )
        try:
            yield Cell(folder=folder, version=self.version)
        finally:
            _remove_cgroup(folder)


def _make_cgroup(parent: Path, name: str, version: int, limit: int) -> Path:
    folder = parent / name
    folder.mkdir()
    try:
        if version == 2:
            (folder / "memory.max").write_text(str(limit))
            if (folder / "memory.swap.max").exists():
                (folder / "memory.swap.max").write_text("0")
        else:
            (folder / "memory.limit_in_bytes").write_text(str(limit))
            memsw = folder / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                with contextlib.suppress(OSError):  # no swap accounting: nothing to hold
                    memsw.write_text(str(limit))
    except OSError:
        _remove_cgroup(folder)
        raise
    return folder


def _remove_cgroup(folder: Path) -> None:
    """rmdir once its processes are gone (the kernel takes a moment after an exit)."""
    for _ in range(50):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    print(f"  ! could not remove the cgroup {folder}", flush=True)


def _own_cgroups() -> list[tuple[int, Path]]:
    """This process's own cgroup v2 folder and cgroup v1 memory folder, where mounted."""
    mounts: dict[str, tuple[str, Path]] = {}  # "v2" or "memory" -> (mount root, mount point)
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3:
                continue
            if tail[0] == "cgroup2":
                mounts.setdefault("v2", (fields[3], Path(fields[4])))
            elif tail[0] == "cgroup" and "memory" in tail[2].split(","):
                mounts.setdefault("memory", (fields[3], Path(fields[4])))
    found: list[tuple[int, Path]] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            key = "v2" if controllers == "" else "memory"
            if key == "memory" and "memory" not in controllers.split(","):
                continue
            if key not in mounts:
                continue
            root, point = mounts[key]
            relative = path[len(root) :] if root != "/" and path.startswith(root) else path
            found.append((2 if key == "v2" else 1, point / relative.lstrip("/")))
    return sorted(found, reverse=True)  # v2 first


def find_confinement(limit_mib: int, wanted: bool) -> Confinement:
    limit = limit_mib * 1024**2
    if not wanted:
        return Confinement("none (--no-limit)", limit)
    tried: list[str] = []
    systemd = ["systemd-run", "--scope", "--quiet", "--collect", "-p", f"MemoryMax={limit_mib}M"]
    if shutil.which("systemd-run"):
        try:
            probe = subprocess.run(
                [*systemd, "--", "true"], capture_output=True, text=True, timeout=30
            )
            if probe.returncode == 0:
                return Confinement(f"{' '.join(systemd)} (each server)", limit, [*systemd, "--"])
            reason = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[0]
        except subprocess.TimeoutExpired:
            reason = "no answer within 30 s"
        tried.append(f"systemd-run: {reason}")
    else:
        tried.append("systemd-run: not installed")
    for version, parent in _own_cgroups():
        where = f"cgroup v{version} below {parent}"
        if version == 2:
            controllers = (parent / "cgroup.controllers").read_text().split()
            if "memory" not in controllers:
                tried.append(f"{where}: no memory controller there")
                continue
            if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                try:
                    (parent / "cgroup.subtree_control").write_text("+memory")
                except OSError as exc:
                    tried.append(f"{where}: cannot enable memory for its children ({exc})")
                    continue
        try:
            _remove_cgroup(
                _make_cgroup(parent, f"minirepo-footprint-{os.getpid()}-probe", version, limit)
            )
        except OSError as exc:
            tried.append(f"{where}: {exc.strerror or exc}")
            continue
        how = f"{where}, a folder of its own per server (memory limit {limit_mib} MiB)"
        return Confinement(how, limit, parent=parent, version=version)
    return Confinement("none: " + "; ".join(tried), limit)


# --------------------------------------------------------------------- installed size


def copy_checkout(target: Path, ref: str = "") -> Path:
    """This checkout as it is now (tracked and untracked files, not ignored ones), or the
    commit `ref` (`git archive`), so the build leaves no build/ or egg-info in the tree."""
    checkout = servers.CHECKOUT
    if ref:
        target.mkdir(parents=True)
        archive = target.parent / "source.tar"
        git = ["git", "-C", str(checkout), "archive", "--format=tar", "-o", str(archive), ref]
        subprocess.run(git, check=True, timeout=60)
        subprocess.run(["tar", "-xf", str(archive), "-C", str(target)], check=True, timeout=60)
        return target
    try:
        listed = subprocess.run(
            ["git", "-C", str(checkout), "ls-files", "-z", "-co", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.split(b"\0")
    except (OSError, subprocess.SubprocessError):
        ignore = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__")
        shutil.copytree(checkout, target, ignore=ignore)
        return target
    for raw in listed:
        source = checkout / os.fsdecode(raw)
        if raw and source.is_file():
            copy = target / os.fsdecode(raw)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
    return target


def build_and_install(work: Path, ref: str) -> tuple[Path, Path]:
    """The wheel of this checkout (or of its commit `ref`), and a fresh venv with it and its
    runtime dependencies."""
    source = copy_checkout(work / "source", ref)
    dist = work / "dist"
    quiet = ["--quiet", "--disable-pip-version-check"]
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *quiet, "-w", str(dist), str(source)])
    wheel = next(dist.glob("*.whl"))
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin/python"), "-m", "pip", "install", "--no-compile", *quiet, str(wheel)])
    return wheel, venv


def _run(cmd: list[str]) -> None:
    """A step whose output (pip's warnings) is shown only when it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_venv_env())
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        raise SystemExit(f"{' '.join(cmd)} exited with {done.returncode}")


def _venv_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the venv's programs: nothing pointing at another index or at
    this checkout's sources."""
    env = base_env(extra)
    env.pop("PYTHONPATH", None)
    return env


def _sizes(venv: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(venv / "bin/python"), "-I", "-c", SIZE_SCRIPT, DISTRIBUTION],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=_venv_env(),
    ).stdout
    sizes: list[dict[str, Any]] = json.loads(out)
    return sizes


def measure_sizes(venv: Path) -> list[dict[str, Any]]:
    """Each distribution of the runtime closure: bytes as installed (`--no-compile`), and
    the bytecode `compileall` then writes for its `.py` files."""
    before = _sizes(venv)
    sources = "\n".join(path for dist in before for path in dist["sources"]) + "\n"
    subprocess.run(
        [str(venv / "bin/python"), "-I", "-m", "compileall", "-q", "-i", "-"],
        input=sources,
        text=True,
        check=True,
        timeout=300,
        env=_venv_env(),
    )
    pyc = {dist["name"]: dist["pyc_bytes"] for dist in _sizes(venv)}
    return [
        {
            "name": dist["name"],
            "version": dist["version"],
            "files": dist["files"],
            "bytes": dist["bytes"],
            "bytes_with_bytecode": dist["bytes"] + pyc.get(dist["name"], 0),
        }
        for dist in before
    ]


def wheel_support(filenames: list[str]) -> dict[str, Any]:
    """Whether these files hold a pure Python wheel, and which CPythons (`cp311`...) have
    manylinux or musllinux wheels for aarch64 and for armv7l."""
    pure = False
    arm: dict[str, set[str]] = {"aarch64": set(), "armv7l": set()}
    for filename in filenames:
        if not filename.endswith(".whl"):
            continue
        try:
            tags = parse_wheel_filename(filename)[3]
        except ValueError:
            continue
        for tag in tags:
            pure |= (
                tag.interpreter.startswith("py3") and tag.abi == "none" and tag.platform == "any"
            )
            if tag.platform.startswith(("manylinux", "musllinux")):
                for machine, found in arm.items():
                    if tag.platform.endswith(f"_{machine}"):
                        found.add(tag.interpreter)
    return {
        "pure": pure,
        **{machine: bool(found) for machine, found in arm.items()},
        **{f"{machine}_pythons": _by_version(found) for machine, found in arm.items()},
    }


def _by_version(interpreters: set[str]) -> list[str]:
    def key(name: str) -> tuple[str, int]:
        digits = re.sub(r"\D", "", name)
        return (name.rstrip("0123456789"), int(digits) if digits else 0)

    return sorted(interpreters, key=key)


def _pypi_json(url: str, seconds: float) -> Any:
    with urllib.request.urlopen(url, timeout=min(15.0, seconds)) as response:  # noqa: S310 - fixed https URL
        return json.load(response)


def pypi_files(name: str, version: str, deadline: float) -> list[str] | str:
    """The file names PyPI has for this release, or why it could not say."""
    try:
        if deadline - time.monotonic() <= 0:
            return "skipped: PyPI's time was used up"
        try:
            document = _pypi_json(
                PYPI_JSON.format(name=name, version=version), deadline - time.monotonic()
            )
            return [str(item["filename"]) for item in document["urls"]]
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or deadline - time.monotonic() <= 0:
                raise
        document = _pypi_json(PYPI_PROJECT_JSON.format(name=name), deadline - time.monotonic())
        release = document["releases"].get(version)
        if release is None:
            return f"{version} is not among PyPI's releases of {name}"
        return [str(item["filename"]) for item in release]
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        http.client.HTTPException,
    ) as exc:
        return f"{type(exc).__name__}: {exc}"


def add_wheel_support(dists: list[dict[str, Any]], wheel: Path) -> None:
    deadline = time.monotonic() + PYPI_SECONDS
    for dist in dists:
        if dist["name"] == DISTRIBUTION:
            files: list[str] | str = [wheel.name]  # this checkout's own wheel
        else:
            files = pypi_files(dist["name"], dist["version"], deadline)
        if isinstance(files, str):
            dist.update(pure="unknown", aarch64="unknown", armv7l="unknown", pypi_error=files)
            dist["verdict"] = "unknown"
            continue
        support = wheel_support(files)
        dist.update(support)
        dist["sdist"] = any(f.endswith((".tar.gz", ".zip")) for f in files)
        fine = support["pure"] or (support["aarch64"] and support["armv7l"])
        dist["verdict"] = "PASS" if fine else "FAIL"


def _yes(dist: dict[str, Any], key: str) -> str:
    value = dist[key]
    if not isinstance(value, bool):
        return str(value)
    pythons = dist.get(f"{key}_pythons") or []
    if dist["pure"] is True and key != "pure" and not value:
        return "-"  # the pure wheel installs anywhere
    if value and pythons and not dist["pure"]:
        return f"yes ({pythons[0]}-{pythons[-1]})" if len(pythons) > 1 else f"yes ({pythons[0]})"
    return "yes" if value else "no"


def size_table(dists: list[dict[str, Any]], wheel: Path) -> str:
    head = ("distribution", "version", "installed", "+ bytecode", "pure", "aarch64", "armv7l")
    rows: list[tuple[str, ...]] = [(*head, "verdict")]
    for dist in dists:
        rows.append(
            (
                dist["name"],
                dist["version"],
                f"{_mib(dist['bytes']):.2f} MiB",
                f"{_mib(dist['bytes_with_bytecode']):.2f} MiB",
                _yes(dist, "pure"),
                _yes(dist, "aarch64"),
                _yes(dist, "armv7l"),
                dist["verdict"],
            )
        )
    total = sum(d["bytes"] for d in dists)
    compiled = sum(d["bytes_with_bytecode"] for d in dists)
    rows.append(
        ("total", "", f"{_mib(total):.2f} MiB", f"{_mib(compiled):.2f} MiB", "", "", "", "")
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for row in rows:
        cells = [
            f"{cell:<{widths[i]}}" if i < 2 else f"{cell:>{widths[i]}}"
            for i, cell in enumerate(row[:-1])
        ]
        lines.append(("  ".join(cells) + f"  {row[-1]}").rstrip())
        if len(lines) == 1:
            lines.append("-" * len(lines[0]))
    lines.append(f"wheel file {wheel.name}: {_mib(wheel.stat().st_size):.3f} MiB")
    lines.append(
        "target: each runtime dependency pure Python (py3-none-any) or with manylinux/musllinux "
        "aarch64 and armv7l wheels"
    )
    errors = {d["name"]: d["pypi_error"] for d in dists if "pypi_error" in d}
    lines += [f"  PyPI gave no answer for {name}: {error}" for name, error in errors.items()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- servers


@dataclasses.dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str
    start_seconds: float

    def rss(self) -> float:
        return load.rss_mb([self.proc.pid])

    def alive(self) -> bool:
        return self.proc.poll() is None


def server_env(data: Path) -> dict[str, str]:
    return _venv_env(
        {
            "MINIREPO_DATA": str(data),
            "MINIREPO_LOG_LEVEL": "warning",  # as benchmarks.servers: no access log lines
            "MINIREPO_CONFIG": os.devnull,  # no ./minirepo.toml nor /etc/minirepo's
        }
    )


@contextlib.contextmanager
def serving(venv: Path, data: Path, cell: Cell) -> Iterator[Server]:
    """`minirepo serve` of the venv on `data`, pinned and confined, logging beside `data`;
    yields once `/simple/` answers, stops it (SIGTERM, then SIGKILL) after."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    minirepo = str(venv / "bin/minirepo")
    cmd = servers._pinned(
        [*cell.prefix, minirepo, "serve", "--host", "127.0.0.1", "--port", str(port)]
    )
    log = data.parent / "server.log"
    start = time.perf_counter()
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            cmd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=server_env(data),
            cwd=data.parent,
            preexec_fn=cell.enter if cell.folder is not None else None,
        )
    try:
        wait_answering(f"{base}/simple/", proc, log, 60, pause=0.01)
        yield Server(proc, base, time.perf_counter() - start)
    finally:
        servers.stop_process(proc)


def idle_rss(server: Server) -> float:
    load.settle([server.proc.pid], quiet=0.5, timeout=10)
    return server.rss()


def measure_starts(
    venv: Path, folders: Callable[[int], Path], starts: int, confinement: Confinement
) -> dict[str, list[float]]:
    """`starts` starts on the data folder `folders(i)`: seconds to first answer, RSS then
    and once idle."""
    seconds: list[float] = []
    at_answer: list[float] = []
    rss: list[float] = []
    for index in range(starts):
        with confinement.cell() as cell, serving(venv, folders(index), cell) as server:
            seconds.append(server.start_seconds)
            at_answer.append(server.rss())
            rss.append(idle_rss(server))
    return {"start_seconds": seconds, "rss_at_first_answer_mib": at_answer, "idle_rss_mib": rss}


def admin_header(data: Path) -> dict[str, str]:
    match = TOKEN_RE.search((data.parent / "server.log").read_text())
    if match is None:
        raise RuntimeError(f"no admin token in {data.parent / 'server.log'}")
    return {"Authorization": load.basic_header("__token__", match.group(0))}


def populate(venv: Path, data: Path, corpus: corpus_mod.Corpus) -> dict[str, Any]:
    """The corpus over the upload API, then `benchmarks/population.py` with the venv's
    minirepo, beside a running server (not confined: nothing here is measured)."""
    started = time.perf_counter()
    with serving(venv, data, Cell()) as server:
        subprocess.run(
            [str(venv / "bin/minirepo"), "user", "add", USER, "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            env=server_env(data),
            cwd=data.parent,
            check=True,
            capture_output=True,
            timeout=120,
        )
        load.bulk_upload(f"{server.base}/", admin_header(data), corpus.files)
        script = Path(__file__).resolve().parent / "population.py"
        out = subprocess.run(
            [
                str(venv / "bin/python"),
                str(script),
                "--data",
                str(data),
                "--user",
                USER,
                "--projects",
                ",".join(corpus.projects),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
            env=_venv_env(),
            cwd=data.parent,
        ).stdout
    made: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return {
        "files": len(corpus.files),
        "projects": len(corpus.projects),
        **{key: made[key] for key in ("repositories", "users", "grants", "tokens")},
        "seconds": round(time.perf_counter() - started, 1),
    }


def big_wheel(cache: Path, size_mb: int) -> Path:
    """The corpus's big wheel at `size_mb` MiB, cached per size as benchmarks.before_after
    keeps it, written whole or not at all."""
    wheel = cache / f"big-wheel-{size_mb}" / Dist("big-wheel", "1.0").wheel_name
    if not wheel.exists():
        wheel.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=wheel.parent) as part:
            corpus_mod.make_big_wheel(Path(part), size_mb).rename(wheel)
    return wheel


def measure_load(
    venv: Path,
    data: Path,
    projects: list[str],
    wheel: Path,
    confinement: Confinement,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """wrk on the pages, then the big upload, on one server of the populated folder."""
    sample = projects[:: max(1, len(projects) // 50)][:50]
    paths = ["/simple/", *(f"/simple/{project}/" for project in sample)]
    out: dict[str, Any] = {"pages": len(paths)}
    with confinement.cell() as cell, serving(venv, data, cell) as server:
        out["rss_before_load_mib"] = idle_rss(server)
        with load.RssSampler([server.proc.pid]) as sampler:
            result = load.wrk(
                server.base, paths, {"Accept": "text/html"}, args.connections, args.seconds
            )
        out.update(
            load_peak_rss_mib=sampler.peak,
            rss_after_load_mib=server.rss(),
            load_rps=result.rps,
            load_p99_ms=result.p99_ms,
            load_errors=result.errors,
        )
        out["rss_before_upload_mib"] = server.rss()
        started = time.perf_counter()
        with load.RssSampler([server.proc.pid]) as sampler:
            try:
                load.bulk_upload(f"{server.base}/", admin_header(data), [wheel], workers=1)
                out["upload_error"] = ""
            except Exception as exc:  # the figure is then missing, and says why
                out["upload_error"] = f"{type(exc).__name__}: {exc}"[:200]
        out.update(
            upload_seconds=time.perf_counter() - started,
            upload_peak_rss_mib=sampler.peak,
            rss_after_upload_mib=server.rss(),
            server_alive=server.alive(),
            cgroup_peak_mib=cell.peak_mib(),
            oom_kills=cell.oom_kills(),
        )
    return out


# ---------------------------------------------------------------------------- the run


def figures(
    empty: dict[str, list[float]],
    full: dict[str, list[float]],
    loaded: dict[str, Any],
    dists: list[dict[str, Any]],
    populated: dict[str, Any],
    args: argparse.Namespace,
) -> list[Figure]:
    median = statistics.median
    label = (
        f"P={populated['projects']}, {populated['files']} files, {populated['users']} users, "
        f"{populated['tokens']} tokens"
    )
    n = len(empty["start_seconds"])
    upload_failed = loaded["upload_error"] or not loaded["server_alive"]
    out = [
        Figure("installed size, runtime closure", _mib(sum(d["bytes"] for d in dists)), "MiB"),
        Figure(
            "installed size with bytecode",
            _mib(sum(d["bytes_with_bytecode"] for d in dists)),
            "MiB",
        ),
        Figure(
            f"start to first answer, empty folder (median of {n})",
            median(empty["start_seconds"]),
            "s",
            START_SECONDS,
        ),
        Figure(
            f"start to first answer, populated (median of {n})",
            median(full["start_seconds"]),
            "s",
            START_SECONDS,
            label,
        ),
        Figure(
            f"idle RSS after start, empty folder (median of {n})",
            median(empty["idle_rss_mib"]),
            "MiB",
            IDLE_RSS_MIB,
        ),
        Figure(
            f"idle RSS after start, populated (median of {n})",
            median(full["idle_rss_mib"]),
            "MiB",
            IDLE_RSS_MIB,
        ),
        Figure(
            f"RSS under read load, peak (wrk c={args.connections}, {args.seconds:g} s)",
            loaded["load_peak_rss_mib"],
            "MiB",
            LOAD_RSS_MIB,
            f"{loaded['pages']} pages",
        ),
        Figure("RSS after the read load", loaded["rss_after_load_mib"], "MiB"),
        Figure("read load throughput", loaded["load_rps"], "req/s"),
        Figure("read load errors", loaded["load_errors"], "", note="non-2xx/3xx + socket"),
        Figure(
            f"RSS during a {args.big_mb} MiB wheel upload, peak",
            None if upload_failed else loaded["upload_peak_rss_mib"],
            "MiB",
            note=loaded["upload_error"] or ("" if loaded["server_alive"] else "server died"),
        ),
        Figure(
            "  its growth over the RSS before it",
            loaded["upload_peak_rss_mib"] - loaded["rss_before_upload_mib"],
            "MiB",
        ),
        Figure("  upload time", loaded["upload_seconds"], "s"),
    ]
    if loaded["cgroup_peak_mib"] is not None:
        out.append(
            Figure(
                "cgroup peak of that server (RSS + page cache)",
                loaded["cgroup_peak_mib"],
                "MiB",
                note=f"oom kills: {loaded['oom_kills']}",
            )
        )
    return out


def figure_table(rows: list[Figure]) -> str:
    width = max(len(row.name) for row in rows)
    cells = [row.cells() for row in rows]
    value_width = max(len(cell[0]) for cell in cells)
    target_width = max(len(cell[1]) for cell in cells)
    head = f"{'figure':{width}}  {'value':>{value_width}}  {'target':>{target_width}}  verdict"
    lines = [head, "-" * len(head)]
    for row, (value, target, verdict) in zip(rows, cells, strict=True):
        note = f"  ({row.note})" if row.note else ""
        line = f"{row.name:{width}}  {value:>{value_width}}  {target:>{target_width}}  {verdict}"
        lines.append(line + note)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=7, help="starts per data folder (median)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--projects", type=int, default=500, help="corpus projects (populated)")
    parser.add_argument("--versions", type=int, default=3, help="versions of each project")
    parser.add_argument("--big-mb", type=int, default=100, help="MiB of the uploaded wheel")
    parser.add_argument("--memory-mib", type=int, default=256, help="each server's memory limit")
    parser.add_argument("--no-limit", action="store_true", help="run without a memory cgroup")
    parser.add_argument(
        "--ref",
        default="",
        help="build this commit (git archive) instead of the work tree as it is now",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--cache", type=Path, default=servers.cache_dir())
    args = parser.parse_args()
    if not 1 <= args.starts <= 100 or not 1 <= args.seconds <= 600:
        parser.error("--starts must be within 1..100 and --seconds within 1..600")
    if shutil.which("wrk") is None:
        from benchmarks.run import ensure_tools

        ensure_tools()

    confinement = find_confinement(args.memory_mib, not args.no_limit)
    pinned = "taskset -c " + servers.SERVER_CPU if shutil.which("taskset") else "not pinned"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"servers: {pinned}; wrk on CPU {load.LOAD_CPU}")
    print(f"memory limit: {confinement.how}", flush=True)
    corpus = corpus_mod.build(
        args.cache / f"corpus-{args.projects}-{args.versions}-full",
        args.projects,
        args.versions,
        0,  # the big wheel is the measured upload (`big_wheel`)
        sdists=True,
    )
    wheel_file = big_wheel(args.cache, args.big_mb)
    with tempfile.TemporaryDirectory(prefix="minirepo-footprint-") as tmp:
        work = Path(tmp)
        print("== building the wheel and a fresh venv", flush=True)
        wheel, venv = build_and_install(work, args.ref)
        wheel_bytes = wheel.stat().st_size
        dists = measure_sizes(venv)
        add_wheel_support(dists, wheel)
        print(size_table(dists, wheel), flush=True)

        print(f"== {args.starts} starts on an empty data folder", flush=True)

        def empty_folder(index: int) -> Path:
            data = work / f"empty-{index}" / "data"
            data.mkdir(parents=True)
            return data

        empty = measure_starts(venv, empty_folder, args.starts, confinement)
        print(f"  {_show(empty)}", flush=True)
        data = work / "populated" / "data"
        data.mkdir(parents=True)
        populated = populate(venv, data, corpus)
        print(f"== populated in {populated['seconds']} s: {populated}", flush=True)
        print(f"== {args.starts} starts on the populated data folder", flush=True)
        full = measure_starts(venv, lambda _: data, args.starts, confinement)
        print(f"  {_show(full)}", flush=True)
        print(f"== read load ({args.seconds:g} s) and a {args.big_mb} MiB upload", flush=True)
        loaded = measure_load(venv, data, corpus.projects, wheel_file, confinement, args)

    rows = figures(empty, full, loaded, dists, populated, args)
    print()
    print(f"memory limit: {confinement.how}")
    print(figure_table(rows))
    failed = [row.name for row in rows if row.verdict == "FAIL"]
    failed += [f"{d['name']} wheels" for d in dists if d["verdict"] == "FAIL"]
    args.json.write_text(
        json.dumps(
            {
                "command": " ".join(["python -m benchmarks.footprint", *sys.argv[1:]]),
                "machine": {
                    "arch": platform.machine(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "pinned": pinned,
                    "memory_limit": confinement.how,
                    "memory_limited": confinement.active,
                },
                "args": {k: str(v) for k, v in vars(args).items()},
                "distributions": dists,
                "wheel": {"name": wheel.name, "bytes": wheel_bytes},
                "populated": populated,
                "samples": {"empty": empty, "populated": full, "load": loaded},
                "figures": [{**dataclasses.asdict(row), "verdict": row.verdict} for row in rows],
                "failed": failed,
            },
            indent=2,
        )
    )
    print(f"\n{len(failed)} target(s) missed{': ' + ', '.join(failed) if failed else ''}")
    print(f"written to {args.json}")
    sys.exit(1 if failed else 0)


def _show(samples: dict[str, list[float]]) -> str:
    seconds = ", ".join(f"{s:.3f}" for s in samples["start_seconds"])
    rss = ", ".join(f"{r:.1f}" for r in samples["idle_rss_mib"])
    return f"start s: {seconds}; idle RSS MiB: {rss}"


if __name__ == "__main__":
    main()
