"""Replay: mark chosen outbox events unpublished so the relay sends them again."""

from collections.abc import Callable, Sequence
from datetime import datetime

from payments.models import Event


def events_to_replay(
    *,
    payment_ids: Sequence[str] = (),
    types: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[str]:
    qs = Event.objects.all()
    if payment_ids:
        qs = qs.filter(payment_id__in=payment_ids)
    if types:
        qs = qs.filter(type__in=types)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lte=until)
    return list(qs.order_by("pk").values_list("pk", flat=True))


def replay_events(
    event_ids: Sequence[str],
    *,
    chunk: int = 5000,
    progress: Callable[[int], object] | None = None,
) -> int:
    done = 0
    for start in range(0, len(event_ids), chunk):
        part = event_ids[start : start + chunk]
        done += Event.objects.filter(pk__in=part).update(published_at=None)
        if progress:
            progress(len(part))
    return done
