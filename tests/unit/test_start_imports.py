"""`minirepo serve` loads only what it needs before its first answer (issue 16's small box:
start <= 0.25 s, idle RSS <= 40 MiB; imported modules are most of both)."""

from __future__ import annotations

import json
import subprocess
import sys

# Each is loaded by the one command or request that uses it (docs/benchmarks.md, session 6).
LATER = {
    "urllib3": "a proxy's first fetch (minirepo.upstream)",
    "minirepo.upstream": "a proxy's first fetch",
    "packaging.requirements": "minirepo cache fetch (minirepo.services.seed)",
    # Issue 17: the README renderers come with the first project page that shows a README.
    "markdown_it": "a README rendered (minirepo.services.readme)",
    "docutils": "a reStructuredText README rendered (minirepo.services.readme)",
    "nh3": "a README rendered (minirepo.services.readme)",
}


def test_serving_loads_no_upstream_client_requirement_parser_or_readme_renderer() -> None:
    """In a process of its own: this one has imported everything the other tests use."""
    code = (
        "import json, sys; import minirepo.cli, minirepo.server, minirepo.app; "
        f"print(json.dumps([name for name in {sorted(LATER)!r} if name in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(done.stdout)
    assert loaded == [], {name: f"only needed by {LATER[name]}" for name in loaded}
