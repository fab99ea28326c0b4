"""What the live page is pushed: each user's new lists, and the worker's metric figures.

:class:`LiveHub` lives on the event loop: the feed (:mod:`stream_rec.api.feed`) hands it
new lists and panel points there; each server-sent-event stream waits on a
:class:`Subscription`. A slow page never holds anything up: a list subscription keeps only
the newest list (older ones are superseded anyway), a metrics one the last 64 points.

:class:`PanelHistory` turns the snapshots the worker writes to the metrics topic (see
:mod:`stream_rec.stream.snapshot`) into the panel's points: events applied per second
between two snapshots, the freshness p50/p99 the worker estimated (from its histogram
since it started), and the online hit rate. The page therefore shows the worker's own
figures, the ones its /metrics exports.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stream_rec.api.lists import CachedList

HISTORY_SECONDS = 600.0
"""How far back the panel's chart reaches."""

_POINTS_QUEUED = 64


@dataclass(eq=False)  # compared and hashed by identity: a set member
class Subscription:
    """One stream's mailbox: the newest list (for list streams) or the points not yet sent."""

    user_id: str | None
    latest: CachedList | None = None
    points: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_POINTS_QUEUED))
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def take_list(self) -> CachedList | None:
        entry, self.latest = self.latest, None
        if not self.points:
            self.changed.clear()
        return entry

    def take_points(self) -> list[dict[str, Any]]:
        points = list(self.points)
        self.points.clear()
        self.changed.clear()
        return points


class LiveHub:
    """Fan-out of new lists (by user) and panel points to open streams. Event loop only."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[Subscription]] = {}
        self._metrics: set[Subscription] = set()

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_user.values()) + len(self._metrics)

    @property
    def watched_users(self) -> frozenset[str]:
        return frozenset(self._by_user)

    def subscribe_user(self, user_id: str) -> Subscription:
        subscription = Subscription(user_id)
        self._by_user.setdefault(user_id, set()).add(subscription)
        return subscription

    def subscribe_metrics(self) -> Subscription:
        subscription = Subscription(None)
        self._metrics.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription.user_id is None:
            self._metrics.discard(subscription)
            return
        subscribers = self._by_user.get(subscription.user_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._by_user[subscription.user_id]

    def publish_lists(self, entries: Iterable[CachedList]) -> None:
        for entry in entries:
            for subscription in self._by_user.get(entry.user_id, ()):
                held = subscription.latest
                if held is None or held.version < entry.version:
                    subscription.latest = entry
                    subscription.changed.set()

    def publish_point(self, point: dict[str, Any]) -> None:
        for subscription in self._metrics:
            subscription.points.append(point)
            subscription.changed.set()

    def close(self) -> None:
        """Wake every stream so that it ends (the server is stopping)."""
        for subscription in [*self._metrics, *(s for v in self._by_user.values() for s in v)]:
            subscription.closed = True
            subscription.changed.set()


class PanelHistory:
    """Panel points from metric snapshots, over the last :data:`HISTORY_SECONDS`.

    Written by the feed on the event loop; :meth:`points` returns a copy.
    With several workers, a point combines each worker's latest snapshot: events/s
    summed, freshness the worst, hit rate the mean.
    """

    def __init__(self, history_seconds: float = HISTORY_SECONDS) -> None:
        self._history = history_seconds
        self._latest: dict[str, dict[str, Any]] = {}
        self._rates: dict[str, float] = {}
        self._points: deque[dict[str, Any]] = deque()

    def points(self) -> list[dict[str, Any]]:
        return list(self._points)

    def newest_event_age(self, now: float | None = None) -> float | None:
        """Seconds since the record timestamp of the newest event any worker applied, as
        its ``stream_rec_newest_event_age_seconds`` said in its last snapshot, plus the time
        since that snapshot (an upper bound); None before a worker applied anything."""
        now = time.time() if now is None else now
        ages = [
            float(s["metrics"].get("stream_rec_newest_event_age_seconds", 0.0))
            + max(0.0, now - float(s["generated_at"]))
            for s in self._latest.values()
            if float(s["metrics"].get("stream_rec_newest_event_timestamp_seconds", 0.0)) > 0
        ]
        return min(ages) if ages else None

    def snapshot_age(self, now: float | None = None) -> float | None:
        """Seconds since the newest snapshot of any worker; None without one."""
        if not self._latest:
            return None
        now = time.time() if now is None else now
        return now - max(float(s["generated_at"]) for s in self._latest.values())

    def offer(self, snapshot: Mapping[str, Any]) -> dict[str, Any] | None:
        """Take one snapshot; return the new panel point (None for a malformed snapshot)."""
        try:
            worker = str(snapshot["worker"])
            generated_at = float(snapshot["generated_at"])
            figures = snapshot["metrics"]
            applied = _total(figures.get("stream_rec_events_applied_total", 0.0))
        except (KeyError, TypeError, ValueError):
            return None
        previous = self._latest.get(worker)
        if previous is not None and generated_at <= float(previous["generated_at"]):
            return None  # an older snapshot read again (the feed re-read the topic)
        if previous is not None:
            before = _total(previous["metrics"].get("stream_rec_events_applied_total", 0.0))
            elapsed = generated_at - float(previous["generated_at"])
            # A restarted worker counts from 0 again: its rate starts with the next snapshot.
            self._rates[worker] = (applied - before) / elapsed if applied >= before else 0.0
        self._latest[worker] = dict(snapshot)
        latest = list(self._latest.values())
        p50 = [s["freshness_p50_s"] for s in latest if s.get("freshness_p50_s") is not None]
        p99 = [s["freshness_p99_s"] for s in latest if s.get("freshness_p99_s") is not None]
        hits = [
            float(s["metrics"]["stream_rec_online_hit_ratio"])
            for s in latest
            if "stream_rec_online_hit_ratio" in s["metrics"]
        ]
        point = {
            "t": generated_at,
            "events_per_s": sum(self._rates.values()) if self._rates else None,
            "freshness_p50_s": max(p50) if p50 else None,
            "freshness_p99_s": max(p99) if p99 else None,
            "hit_ratio": sum(hits) / len(hits) if hits else None,
            "applied_events": sum(
                _total(s["metrics"].get("stream_rec_events_applied_total", 0.0)) for s in latest
            ),
            "workers": len(latest),
        }
        self._points.append(point)
        while self._points and self._points[0]["t"] < generated_at - self._history:
            self._points.popleft()
        return point


def _total(value: Any) -> float:
    """A snapshot figure summed over its labels ({labels: value}) or taken as it is."""
    if isinstance(value, Mapping):
        return float(sum(float(v) for v in value.values()))
    return float(value)
