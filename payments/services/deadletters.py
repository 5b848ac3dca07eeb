"""Dead letters: work that needs a human. Declines are outcomes, never dead letters."""

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from payments.models import DeadLetter


def dead_letter_record(
    *,
    stage: str,
    error_class: str,
    message: str,
    payment_id: str | None = None,
) -> DeadLetter:
    """Open a dead letter, or bump the open one for the same payment and stage.

    ``message`` must never contain card data; callers pass classified errors.
    """
    message = message[:2000]
    if payment_id is not None:
        updated = DeadLetter.objects.filter(
            payment_id=payment_id, stage=stage, status=DeadLetter.Status.OPEN
        ).update(
            attempts=F("attempts") + 1,
            last_seen=timezone.now(),
            error_class=error_class,
            message=message,
        )
        if updated:
            return DeadLetter.objects.get(
                payment_id=payment_id, stage=stage, status=DeadLetter.Status.OPEN
            )
    try:
        with transaction.atomic():
            return DeadLetter.objects.create(
                payment_id=payment_id,
                stage=stage,
                error_class=error_class,
                message=message,
            )
    except IntegrityError:  # a concurrent writer opened it first
        return DeadLetter.objects.get(
            payment_id=payment_id, stage=stage, status=DeadLetter.Status.OPEN
        )


def dead_letter_resolve(*, dead_letter: DeadLetter, resolution: str) -> bool:
    return bool(
        DeadLetter.objects.filter(
            pk=dead_letter.pk, status=DeadLetter.Status.OPEN
        ).update(status=DeadLetter.Status.RESOLVED, resolution=resolution[:2000])
    )
