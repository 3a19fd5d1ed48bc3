"""The mixed-attack benchmark (issue 14): a developer's daily life against a real
`minirepo serve`, first quiet, then while eight attacks run at once, then its recovery.

    python -m benchmarks.attack                                  # 20 s quiet, 60 s attack
    python -m benchmarks.attack --quiet-seconds 5 --seconds 10   # a smoke run
    python -m benchmarks.attack --json /tmp/attack.json --server-setting header_timeout=5
    python -m benchmarks.attack --skip a --skip b   # which attack hurts: leave some out

Loopback only: the server listens on 127.0.0.1; the attackers bind 127.0.0.2 and 127.0.0.3
as their source addresses, and the legitimate client keeps the default (127.0.0.1), so the
server can tell them apart as it would on a LAN. Every loop is bounded in count and in time,
and the run stops by itself; on exit every socket is closed, every client process and the
server killed, and the temp folder removed.

Setup: this checkout's minirepo (or `--source`'s), run by `--python runtime`, the cached
venv of its runtime dependencies that `benchmarks.run` uses (as `pip install minirepo`
leaves a Pi), or by `current`, this interpreter; with its default settings plus
`--server-setting`s, in a temp data folder on a free port, with its own TMPDIR so that
waitress's spool files can be measured. An account `uploader` (role uploader in `main`,
password hashed cheaply at creation as the tests do) and its upload token; a public 24 MiB
wheel of random bytes; a 5-project chain (chain-a requires chain-b ... chain-e). The
archive bombs are built once and cached beside the benchmark corpus
(`~/.cache/minirepo-bench`).

Phases:
1. quiet (`--quiet-seconds`): in turn, `pip install --no-cache-dir --target` of chain-a (all
   five), `uv pip install --no-cache` of the same into a fresh venv, `twine upload` of a new
   version of `daily-life`; beside them `/-/health` every 100 ms, each on a new connection
   (a kept-alive one would never wait to be accepted, and that is what slowloris attacks).
2. attack (`--seconds`): the same life while these run; counts are totals spread over the
   two attacker addresses unless said, and each request loop waits 50 ms between attempts:
   a. slowloris: 100 sockets per address, a GET whose headers never end (a line every 5 s);
   b. slow reader: 8 sockets, each pipelining two GETs of the 24 MiB file, reading nothing;
   c. anonymous disk fill: 60 MiB multipart POSTs without credentials, 5 at a time;
   d. text-field memory: 16 text fields of 4 MiB in one POST, with the token, 2 at a time;
   e. fd exhaustion: 995 tiny file parts in one POST, with the token, 3 at a time;
   f. archive bombs: a wheel of 400 000 entries and a .tar.gz of 400 000 members (PKG-INFO
      last), each uploaded again and again, 1 at a time;
   g. cross-site form posts: an upload with the uploader's password, `Origin:
      http://evil.example` and `Sec-Fetch-Site: cross-site`;
   h. Host header poisoning: GET /simple with `Host: evil.example`.
   A closed connection is opened again (slowloris at most 20 a second per address, a slow
   reader's socket at most once a second).
3. recovery: `/-/health` every 100 ms after the attack's sockets are cut. Back to quiet is
   the time from that cut to the first of 10 consecutive probes answering 200 within
   max(1.5 x quiet p99, quiet p99 + 20 ms); it is given up after 60 s.
4. refused POST alone: once the spool has drained (at most 30 s), one anonymous 60 MiB
   POST with nothing else running, the spool sampled every 10 ms: how much a refused POST
   costs in disk (mixed with the attack's authorized uploads, it could not be told apart).
   The cross-site posts the server stored are counted from its audit log afterwards.

Measured every 100 ms: the server's VmRSS and open fds (/proc/<pid>/fd), and its spool:
the bytes of every file under its TMPDIR and `<data>/tmp`, counting the files it holds open
after unlinking them (waitress's TemporaryFile has no name). Latency percentiles count a
failed operation as its timeout (5 s for a probe, 60 s for a client), not as a fast answer.

Targets (PASS/FAIL; the exit status is 1 if any fails): every legitimate operation of the
quiet and attack phases succeeds; health p99 during the attack <= 1 s; peak RSS <= 120 MiB;
back to quiet within 5 s; a refused POST spools <= 64 KiB; the peak spool stays within
`max_spool_bytes` (0: twice `max_upload_size`); no cross-site post is accepted; no answer
to a poisoned Host carries an absolute Location.

The server is pinned to CPU 0 and this process with all its clients to CPU 1, as in
`benchmarks.run` (`--no-pin` to leave both free).
"""

# The package, by job (each module imports only those above it in this list):
#   archives.py       the wheels and the archive bombs
#   target.py         the server under attack: start, stop, its accounts and files
#   monitor.py        sampling the server's RSS, open fds and spool
#   rawhttp.py        attack sockets and hand-written HTTP requests and answers
#   forms.py          multipart upload bodies built by hand
#   legit.py          the legitimate client: pip, uv, twine and the health probes
#   slow_clients.py   the socket-juggling attacks (a: slowloris, b: slow readers)
#   attacks.py        the request-loop attacks (c to h) and the thread per worker
#   phases.py         quiet, attack, recovery, the refused POST alone
#   report.py         percentiles, the table, the targets, the JSON
#   __main__.py       the command line and the run from start to end
