"""A retention rule: which of a hosted repository's releases `minirepo prune` removes.

Its own module because both `services.repos` (which stores a repository's rule, as JSON in
`Repository.retention`) and `services.retention` (which applies it, and imports `repos`)
need it, as `proxy_options` is for a proxy's options.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from minirepo.errors import UserError

DAY = 86400.0


@dataclasses.dataclass(frozen=True)
class Rule:
    keep: int | None = None  # the newest releases of each project kept whatever their age
    older_than: float | None = None  # seconds; younger releases are kept
    dev_only: bool = False

    @property
    def is_set(self) -> bool:
        return self.keep is not None or self.older_than is not None

    def check(self) -> Rule:
        if not self.is_set:
            raise UserError("Say what to prune: --keep N, --older-than AGE, or both")
        if self.keep is not None and self.keep < 0:
            raise UserError("--keep must be 0 or more")
        if self.older_than is not None and self.older_than <= 0:
            raise UserError("--older-than must be more than 0")
        return self

    def replaced(self, **changes: Any) -> Rule:
        """A copy with the given (non-None) fields changed, checked."""
        kept = {key: value for key, value in changes.items() if value is not None}
        return dataclasses.replace(self, **kept).check()

    def describe(self) -> str:
        parts = [f"keep {self.keep}"] if self.keep is not None else []
        if self.older_than is not None:
            parts.append(f"older than {self.older_than / DAY:g} days")
        if self.dev_only:
            parts.append("dev releases only")
        return ", ".join(parts) or "none"

    def to_json(self) -> str:
        """What `Repository.retention` stores; "" for no rule."""
        if not self.is_set:
            return ""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Rule:
        if not text:
            return cls()
        known = {field.name for field in dataclasses.fields(cls)}
        stored = json.loads(text)
        return cls(**{key: value for key, value in stored.items() if key in known})
