"""What every view needs from the app: its services, looked up per request."""

from __future__ import annotations

from flask import current_app

from minirepo.config import Settings
from minirepo.services.index import Index
from minirepo.services.upload import UploadService


def settings() -> Settings:
    value: Settings = current_app.extensions["minirepo.settings"]
    return value


def index() -> Index:
    value: Index = current_app.extensions["minirepo.index"]
    return value


def uploads() -> UploadService:
    value: UploadService = current_app.extensions["minirepo.uploads"]
    return value
