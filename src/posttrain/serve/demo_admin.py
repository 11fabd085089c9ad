"""One demo admin, reused: `make serve` / `posttrain serve --demo-admin` (and the loop demo)
print a fresh key for the user `demo-admin` on every run, and the previous key stops working.
(Before, every run created another admin with a valid key.)"""

from __future__ import annotations

from posttrain.store._store import Store

DEMO_ADMIN = "demo-admin"


def rotate_demo_admin(store: Store, name: str = DEMO_ADMIN) -> str:
    """Create the admin `name` if it does not exist, else replace its API key; returns the new
    key (the old one is refused from now on, on every server sharing the store)."""
    from posttrain.store import users as user_queries

    with store.session() as s:
        existing = user_queries.user_by_name(s, name) if hasattr(user_queries, "user_by_name") else None
    if existing is None:
        try:
            _, key = user_queries.add_user(store, name, admin=True)
            return key
        except user_queries.UserExists:
            pass  # created meanwhile by another process (or user_by_name is missing): rotate
    revoke = getattr(user_queries, "revoke_key", None)
    if revoke is None:
        raise RuntimeError("rotating a key needs posttrain.store.users.revoke_key, which is not available yet")
    user, key = revoke(store, name)
    if not user.is_admin:
        raise ValueError(f"user {name!r} exists and is not an admin; pick another name for the demo admin")
    return key
