"""URL rules compile their builders on first use (`app.LazyRule`): start-up no longer pays
for them, and `url_for` still builds every kind of rule."""

from __future__ import annotations

from flask import Flask, url_for

from minirepo.app import LazyRule


def test_builders_wait_for_the_first_url_for(app: Flask) -> None:
    rules = list(app.url_map.iter_rules())
    assert rules
    assert all(isinstance(rule, LazyRule) for rule in rules)
    with app.test_request_context("/"):
        assert url_for("webpage.static", filename="style.css") == "/-/static/style.css"
        assert (
            url_for("projectpage.project_page", repo="main", name="demo", version="1.0")
            == "/main/project/demo/1.0/"
        )
        # Unknown values become the query string (the other builder).
        assert url_for("web.repository_page", repo="main", page=2) == "/main/?page=2"
        assert url_for("web.repository_page", repo="team") == "/team/"
