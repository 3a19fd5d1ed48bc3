"""The first start under systemd keeps the admin's token out of the journal, and a server
bound to every interface prints the URLs other machines can use (issue 16).

systemd sets INVOCATION_ID (and JOURNAL_STREAM when output goes to the journal) for every
service; a real `minirepo serve` is started with them set, and once with them empty.
"""

from __future__ import annotations

import ipaddress
import socket
import stat
import sys
from pathlib import Path

import pytest
import requests

from minirepo import netaddrs
from minirepo.config import Settings
from minirepo.errors import UserError
from minirepo.server import TOKEN_PLACEHOLDER, first_start_banner, served_urls
from minirepo.services import datafolder
from minirepo.services.datafolder import FIRST_TOKEN_FILE, create_first_admin
from tests.helpers.serverproc import FAST_HASH, TOKEN_RE, running_server

TOKEN = "mr-" + "t" * 43
UNDER_SYSTEMD = {"INVOCATION_ID": "5f0c0ffee5f0c0ffee5f0c0ffee5f0c0", "JOURNAL_STREAM": "8:4242"}
NOT_UNDER_SYSTEMD = {"INVOCATION_ID": "", "JOURNAL_STREAM": ""}  # empty counts as unset


def whoami(url: str, token: str) -> requests.Response:
    return requests.get(f"{url}/-/api/whoami", auth=("__token__", token), timeout=10)


def test_under_systemd_the_token_goes_to_a_private_file(tmp_path: Path) -> None:
    with running_server(tmp_path / "server", settings=UNDER_SYSTEMD) as server:
        log = server.log.read_text()
        token_file = server.data.resolve() / FIRST_TOKEN_FILE
        assert TOKEN_RE.search(log) is None, log  # not in the journal
        assert f"The admin's API token is in {token_file}" in log
        assert f"sudo cat {token_file}" in log
        assert f"-p {TOKEN_PLACEHOLDER} dist/*" in log  # the client lines, without it
        assert f"minirepo is serving {server.url}/" in log
        info = token_file.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600
        token = token_file.read_text().strip()
        assert TOKEN_RE.fullmatch(token)
        answer = whoami(server.url, token)
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"] == "admin"
    first_log_size = len(server.log.read_bytes())
    token_file.unlink()  # as the admin is told to, once the token is kept elsewhere

    with running_server(tmp_path / "server", settings=UNDER_SYSTEMD) as again:
        later = again.log.read_bytes()[first_log_size:].decode()
        assert "First start" not in later
        assert not token_file.exists()


def test_elsewhere_the_token_is_printed_and_no_file_made(tmp_path: Path) -> None:
    with running_server(tmp_path / "server", settings=NOT_UNDER_SYSTEMD) as server:
        log = server.log.read_text()
        assert len(set(TOKEN_RE.findall(log))) == 1, log
        assert whoami(server.url, server.admin_token).status_code == 200
        assert not (server.data / FIRST_TOKEN_FILE).exists()
        assert "sudo cat" not in log


def test_a_left_over_token_file_stops_the_first_start(tmp_path: Path) -> None:
    """Created exclusively: an old file is never overwritten nor followed if a link, and
    no account is made whose token nobody could read; the next start tries again."""
    settings = Settings(data=tmp_path / "data", password_hash=FAST_HASH, upstream="")
    folder = datafolder.open_for_serving(settings)
    token_file = settings.data / FIRST_TOKEN_FILE
    token_file.write_text("old\n")
    try:
        with folder.database.activated():
            with pytest.raises(UserError, match="left from an earlier first start"):
                create_first_admin(settings, token_file)
            assert token_file.read_text() == "old\n"
            token_file.unlink()
            token_file.symlink_to(tmp_path / "elsewhere")
            with pytest.raises(UserError):
                create_first_admin(settings, token_file)
            assert not (tmp_path / "elsewhere").exists()
            token_file.unlink()
            token = create_first_admin(settings, token_file)
            assert token is not None
            assert token_file.read_text() == token + "\n"
            assert create_first_admin(settings, token_file) is None  # only once
    finally:
        folder.database.close()


def test_banner_with_a_token_file() -> None:
    path = Path("/var/lib/minirepo") / FIRST_TOKEN_FILE
    banner = first_start_banner(Settings(port=9000), TOKEN, is_public=False, token_file=path)
    assert TOKEN not in banner
    assert f"The admin's API token is in {path}" in banner
    url = f"http://__token__:{TOKEN_PLACEHOLDER}@127.0.0.1:9000/simple/"
    assert f"pip install --index-url {url} --trusted-host 127.0.0.1 PACKAGE" in banner
    assert f"poetry config http-basic.minirepo __token__ {TOKEN_PLACEHOLDER}" in banner


@pytest.mark.parametrize(
    ("host", "family", "addresses", "urls"),
    [
        (
            "0.0.0.0",  # noqa: S104
            socket.AF_INET,
            ["192.168.1.20", "10.8.0.1"],
            ["http://192.168.1.20:8080/", "http://10.8.0.1:8080/"],
        ),
        ("::", socket.AF_INET6, ["fd00::20"], ["http://[fd00::20]:8080/"]),
        ("0.0.0.0", socket.AF_INET, [], ["http://labbox:8080/"]),  # noqa: S104
    ],
)
def test_a_wildcard_bind_prints_a_url_per_address(
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    family: socket.AddressFamily,
    addresses: list[str],
    urls: list[str],
) -> None:
    asked = []

    def interface_addresses(wanted: socket.AddressFamily) -> list[str]:
        asked.append(wanted)
        return addresses

    monkeypatch.setattr(netaddrs, "interface_addresses", interface_addresses)
    monkeypatch.setattr("socket.gethostname", lambda: "labbox")
    settings = Settings(host=host)
    assert served_urls(settings) == urls
    assert asked == [family]  # waitress binds 0.0.0.0 to IPv4 only, :: to IPv6 only
    banner = first_start_banner(settings, TOKEN)
    first = urls[0]
    assert f"pip install --index-url {first}simple/ --trusted-host" in banner
    if len(urls) > 1:
        assert f"This machine's other addresses: {', '.join(urls[1:])}" in banner
    else:
        assert "other addresses" not in banner


def test_no_address_lookup_when_the_url_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    def interface_addresses(wanted: socket.AddressFamily) -> list[str]:
        raise AssertionError("not needed")

    monkeypatch.setattr(netaddrs, "interface_addresses", interface_addresses)
    assert served_urls(Settings(host="192.168.1.20", port=9000)) == ["http://192.168.1.20:9000/"]
    public = Settings(host="0.0.0.0", public_url="https://pypi.lab.example")  # noqa: S104
    assert served_urls(public) == ["https://pypi.lab.example/"]


def test_this_machines_addresses() -> None:
    """Read from the interfaces, no packet sent; loopback and link-local left out."""
    for family in (socket.AF_INET, socket.AF_INET6):
        for address in netaddrs.interface_addresses(family):
            ip = ipaddress.ip_address(address)
            assert ip.version == (4 if family == socket.AF_INET else 6)
            assert not ip.is_loopback
            assert not ip.is_link_local
    if sys.platform == "linux":
        assert "127.0.0.1" in netaddrs.ipv4_addresses()  # found, then left out


def test_no_netlink(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The unit allows AF_INET, AF_INET6 and AF_UNIX sockets only; glibc's if_nameindex()
    asks a netlink socket, so the interfaces are read from /proc/net/dev instead."""

    def if_nameindex() -> list[tuple[int, str]]:
        raise OSError(97, "Address family not supported by protocol")

    monkeypatch.setattr(socket, "if_nameindex", if_nameindex)
    table = tmp_path / "dev"
    table.write_text(
        "Inter-|   Receive    |  Transmit\n"
        " face |bytes packets |bytes packets\n"
        "    lo: 1 2 3 4\n"
        "  eth0: 1 2 3 4\n"
        "wlan0: 1 2 3 4\n"
    )
    monkeypatch.setattr(netaddrs, "NET_DEV", table)
    assert netaddrs.interface_names() == ["lo", "eth0", "wlan0"]
    if sys.platform == "linux":
        assert "127.0.0.1" in netaddrs.ipv4_addresses()  # lo, asked by SIOCGIFADDR


def test_ipv6_addresses_keep_stable_global_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(
        "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n"  # link-local
        "00000000000000000000000000000001 01 80 10 80       lo\n"  # loopback
        "fd000000000000000000000000000002 04 40 00 82     eth0\n"  # ULA, permanent
        "20010db8000000000000000000000003 03 40 00 01    wlan0\n"  # temporary (privacy)
        "20010db8000000000000000000000004 03 40 00 20    wlan0\n"  # deprecated
        "20010db8000000000000000000000005 03 40 00 00    wlan0\n"  # global, from SLAAC
    )
    monkeypatch.setattr(netaddrs, "IF_INET6", table)
    assert netaddrs.ipv6_addresses() == ["2001:db8::5", "fd00::2"]  # in interface order
    monkeypatch.setattr(netaddrs, "IF_INET6", tmp_path / "absent")
    assert netaddrs.interface_addresses(socket.AF_INET6) == []
