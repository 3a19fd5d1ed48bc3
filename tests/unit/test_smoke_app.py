from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from minirepo.config import Settings
from tests.conftest import post_upload, snapshot


def test_upload_then_page_lists_file(client: FlaskClient, admin: str, wheel: Path) -> None:
    response = post_upload(client, admin, wheel)
    assert response.status_code == 200, response.get_data(as_text=True)
    page = client.get("/simple/demo-pkg/")
    assert page.status_code == 200
    assert wheel.name in page.get_data(as_text=True)


def test_bad_digest_leaves_nothing(
    client: FlaskClient, admin: str, wheel: Path, settings: Settings
) -> None:
    before = snapshot(settings)
    response = post_upload(client, admin, wheel, sha256_digest="0" * 64)
    assert response.status_code == 400
    assert "does not match" in response.status
    assert snapshot(settings) == before
