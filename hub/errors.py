"""The one shape of a refusal: a stable code for machines, words for people, an HTTP status.

Services raise a subclass; the web layer turns any of them into the same JSON error (or a
flash message in the console) without knowing which service refused.
"""

from __future__ import annotations

from typing import Any


class Refusal(Exception):
    def __init__(self, code: str, message: str, status: int = 409, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.details = details
