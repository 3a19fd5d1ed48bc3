"""The home and repository pages show client lines for the address the browser used
(issue 16): a server bound to every interface has no one address, and the browser's works
from where it is. `public_url`, when set, wins (behind a proxy it is the URL users type)."""

from __future__ import annotations

import dataclasses
import html
import re

from flask.testing import FlaskClient

from minirepo.app import create_app
from minirepo.config import Settings

PRE = re.compile(r'<pre id="[^"]*"[^>]*>(.*?)</pre>', re.DOTALL)


def lines(client: FlaskClient, path: str = "/", **kwargs: object) -> str:
    """The page's snippets, unescaped, one after another."""
    response = client.get(path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.status
    return "\n".join(html.unescape(text) for text in PRE.findall(response.get_data(as_text=True)))


def test_lines_use_the_address_the_browser_used(client: FlaskClient) -> None:
    body = lines(client, base_url="http://192.168.1.20:8080")
    index = "http://192.168.1.20:8080/all/simple/"  # the home page leads with the group
    assert f"pip install --index-url {index} --trusted-host 192.168.1.20:8080 PACKAGE" in body
    assert f"uv pip install --index-url {index} PACKAGE" in body
    body = lines(client, "/main/", base_url="http://box.lan:8080")
    assert "pip install --index-url http://box.lan:8080/main/simple/" in body
    assert "repository = http://box.lan:8080/main/" in body
    assert "--publish-url http://box.lan:8080/main/ " in body


def test_ipv6_and_https(client: FlaskClient) -> None:
    body = lines(client, base_url="http://[fd00::20]:8080")
    index = "http://[fd00::20]:8080/all/simple/"
    assert f"--index-url {index} --trusted-host [fd00::20]:8080 PACKAGE" in body
    body = lines(client, base_url="https://pypi.lab.example")
    assert "pip install --index-url https://pypi.lab.example/all/simple/ PACKAGE" in body
    assert "--trusted-host" not in body  # https needs no exception


def test_public_url_wins(settings: Settings) -> None:
    configured = dataclasses.replace(settings, public_url="https://pypi.lab.example/")
    client = create_app(configured).test_client()
    body = lines(client, "/main/", base_url="http://127.0.0.1:8080")
    assert "pip install --index-url https://pypi.lab.example/main/simple/ PACKAGE" in body
    assert "127.0.0.1" not in body


def test_without_the_first_start_group_the_home_page_is_main(settings: Settings) -> None:
    plain = dataclasses.replace(settings, upstream="")
    body = lines(create_app(plain).test_client(), base_url="http://box.lan:8080")
    assert "pip install --index-url http://box.lan:8080/main/simple/ --trusted-host" in body
    assert "/all/" not in body


def test_a_host_header_no_browser_sends(client: FlaskClient) -> None:
    """werkzeug empties it; the lines then name the bind address, and never echo it."""
    for host in ("a<b>", "[x", 'x" onload="y'):
        response = client.get("/", headers={"Host": host})
        assert host not in response.get_data(as_text=True)
        body = lines(client, headers={"Host": host})
        index = "http://127.0.0.1:8080/all/simple/"
        assert f"--index-url {index} --trusted-host 127.0.0.1:8080" in body
