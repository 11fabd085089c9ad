"""The pairwise leaderboard: Bradley–Terry on aggregated counts with bootstrap or sandwich
intervals, style control, position bias, vote-quality filters and integrity figures.

    fit(votes, rounds=100, ci="bootstrap", style=False, anchor=None, seed=0) -> dict
    votes_from_store(store) -> list[dict]
"""

from posttrain.arena._fit import fit
from posttrain.arena._quality import QualityRules
from posttrain.arena.votes import Votes, from_records, read_votes, style_of

__all__ = ["QualityRules", "Votes", "fit", "from_records", "read_votes", "style_of", "votes_from_store",
           "record_models", "model_record"]


def __getattr__(name: str):  # the store-backed helpers import SQLAlchemy only when used
    if name in ("votes_from_store", "record_models", "model_record"):
        from posttrain.arena import _store

        return getattr(_store, name)
    raise AttributeError(name)
