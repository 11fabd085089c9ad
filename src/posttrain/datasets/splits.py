"""Train/test split by user: all rows of a user go to one side, so no user and hence no
conversation is in both (a conversation belongs to one user; a preference pair's two answers
are the same user's). The side comes from a hash of (seed, user id), so it is the same in every
export with the same seed, and a test user stays a test user as their data grows.

`SplitCheck` records the users and conversations written to each side and fails loudly if any
ended up in both: the check is on what was written, not on the rule.
"""

from __future__ import annotations

import hashlib
from typing import Any


def side(user_id: str, test_fraction: float, seed: int = 0) -> str:
    """'test' for about `test_fraction` of users, else 'train'."""
    if not 0 <= test_fraction < 1:
        raise ValueError("test_fraction: must be in [0, 1)")
    h = int.from_bytes(hashlib.sha256(f"{seed}:{user_id}".encode()).digest()[:8], "big")
    return "test" if h / 2**64 < test_fraction else "train"


class SplitOverlap(AssertionError):
    """A user or conversation is in both splits (a bug: the export is not stored)."""


class SplitCheck:
    def __init__(self) -> None:
        self.users: dict[str, set[str]] = {"train": set(), "test": set()}
        self.conversations: dict[str, set[str]] = {"train": set(), "test": set()}
        self.rows = {"train": 0, "test": 0}

    def add(self, where: str, user_id: str, conversations: tuple[str, ...] | list[str]) -> None:
        self.rows[where] += 1
        self.users[where].add(user_id)
        self.conversations[where].update(conversations)

    def verify(self) -> dict[str, Any]:
        """Raise SplitOverlap on any overlap; else the split summary for the report."""
        both_users = self.users["train"] & self.users["test"]
        both_convs = self.conversations["train"] & self.conversations["test"]
        if both_users or both_convs:
            raise SplitOverlap(f"split check failed: {len(both_convs)} conversation(s) and "
                               f"{len(both_users)} user(s) in both train and test")
        return {
            "by": "user",
            **{w: {"rows": self.rows[w], "users": len(self.users[w]), "conversations": len(self.conversations[w])}
               for w in ("train", "test")},
            "conversations_in_both": 0,
        }
