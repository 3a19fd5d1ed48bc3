"""The services one app holds, typed: views ask for `services().index`, not a string key."""

from __future__ import annotations

import dataclasses

from minirepo.config import Settings
from minirepo.services.datafolder import DataFolder
from minirepo.services.downloads import DownloadCounter
from minirepo.services.fetches import Fetches
from minirepo.services.index import Index
from minirepo.services.proxies import Proxies
from minirepo.services.upload import UploadService


@dataclasses.dataclass(frozen=True)
class Services:
    settings: Settings
    folder: DataFolder
    index: Index
    uploads: UploadService
    proxies: Proxies
    fetches: Fetches
    downloads: DownloadCounter
