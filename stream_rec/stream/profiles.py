"""Profile messages (user demographics, item metadata) into model features.

A profile replaces its entity's feature set. ``{"age": "25-34", "genres": ["a", "b"]}``
becomes the tokens ``age=25-34``, ``genres=a``, ``genres=b``: each token has an embedding,
averaged into the entity's effective vector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stream_rec.events import ItemMetadata, Profile, UserProfile
from stream_rec.model import HybridModel


def feature_tokens(features: Mapping[str, str | Sequence[str]]) -> list[str]:
    """The tokens of a profile's features, in a stable order.

    >>> feature_tokens({"genre": ["drama", "war"], "age": "25-34"})
    ['age=25-34', 'genre=drama', 'genre=war']
    """
    tokens: list[str] = []
    for name in sorted(features):
        value = features[name]
        values = [value] if isinstance(value, str) else list(value)
        tokens.extend(f"{name}={v}" for v in values)
    return tokens


def apply_profiles(model: HybridModel, profiles: Sequence[Profile]) -> list[int]:
    """Set each profile's features in ``model``, in order; returns the rows of the users
    whose profile changed (each gets a fresh list: its effective vector moved)."""
    users: dict[int, None] = {}
    for profile in profiles:
        if isinstance(profile, UserProfile):
            users[model.set_user_features(profile.user_id, feature_tokens(profile.features))] = None
        elif isinstance(profile, ItemMetadata):
            model.set_item_features(
                profile.item_id, feature_tokens(profile.features), profile.duration_seconds
            )
    return list(users)
