from django.conf import settings
from django.db import models
from django.db.models import F, Q

from core.ids import new_id
from payments.state import PaymentStatus, RefundStatus
from vault.fields import EncryptedTextField


def mer_id():
    return new_id("mer")


def key_id():
    return new_id("key")


def pay_id():
    return new_id("pay")


def evt_id():
    return new_id("evt")


def re_id():
    return new_id("re")


def pb_id():
    return new_id("pb")


def dl_id():
    return new_id("dl")


class Merchant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        DISABLED = "disabled"

    id = models.CharField(
        primary_key=True, max_length=40, default=mer_id, editable=False
    )
    name = models.CharField(max_length=200)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    # Fee = amount * fee_bps / 10_000 (rounded half up) + fee_fixed, in minor units.
    fee_bps = models.PositiveIntegerField(default=290)
    fee_fixed = models.BigIntegerField(default=30)
    # Per-payment ceiling in minor units; null means the platform maximum.
    max_amount = models.BigIntegerField(null=True, blank=True)
    # Enabled currencies (lowercase ISO 4217); empty means every supported one.
    currencies = models.JSONField(default=list, blank=True)
    primary_gateway = models.CharField(max_length=32, default="sandbox")
    secondary_gateway = models.CharField(max_length=32, blank=True, default="")
    # Rate limits; null means the platform default (settings SURGE_RATE_LIMIT_*,
    # SURGE_PAYMENTS_PER_*): requests a second per API key and its burst, and
    # payments a minute and an hour for the merchant.
    rate_limit_per_second = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_burst = models.PositiveIntegerField(null=True, blank=True)
    payments_per_minute = models.PositiveIntegerField(null=True, blank=True)
    payments_per_hour = models.PositiveIntegerField(null=True, blank=True)
    # Risk rules (payments.services.risk), evaluated by the enrich stage; null
    # or empty is off. Velocity: at most N payments (``*_count``) or an amount
    # (``*_amount``, minor units, any currency) per card fingerprint or per
    # customer reference within ``*_window`` seconds (null: the platform's
    # SURGE_RISK_VELOCITY_WINDOW_SECONDS). ``risk_outcomes`` overrides the
    # platform's outcome (review or block) per rule.
    risk_card_velocity_count = models.PositiveIntegerField(null=True, blank=True)
    risk_card_velocity_amount = models.BigIntegerField(null=True, blank=True)
    risk_card_velocity_window = models.PositiveIntegerField(null=True, blank=True)
    risk_customer_velocity_count = models.PositiveIntegerField(null=True, blank=True)
    risk_customer_velocity_amount = models.BigIntegerField(null=True, blank=True)
    risk_customer_velocity_window = models.PositiveIntegerField(null=True, blank=True)
    risk_amount_ceiling = models.BigIntegerField(null=True, blank=True)
    risk_blocked_countries = models.JSONField(default=list, blank=True)
    risk_blocked_bins = models.JSONField(default=list, blank=True)
    risk_outcomes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(fee_fixed__gte=0), name="merchant_fee_fixed_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(max_amount__isnull=True) | Q(max_amount__gt=0),
                name="merchant_max_amount_gt_0",
            ),
            *(
                models.CheckConstraint(
                    condition=Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__gt": 0}),
                    name=f"merchant_{name}_gt_0",
                )
                for name in (
                    "rate_limit_per_second",
                    "rate_limit_burst",
                    "payments_per_minute",
                    "payments_per_hour",
                    "risk_card_velocity_count",
                    "risk_card_velocity_amount",
                    "risk_card_velocity_window",
                    "risk_customer_velocity_count",
                    "risk_customer_velocity_amount",
                    "risk_customer_velocity_window",
                    "risk_amount_ceiling",
                )
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.id})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def amount_limit(self) -> int:
        return self.max_amount or settings.SURGE_MAX_AMOUNT


class ApiKey(models.Model):
    """A secret key, stored as its SHA-256 digest; the secret is shown once."""

    id = models.CharField(
        primary_key=True, max_length=40, default=key_id, editable=False
    )
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="api_keys"
    )
    prefix = models.CharField(max_length=32, unique=True)
    digest = models.CharField(max_length=64, unique=True)  # what a key is found by
    last4 = models.CharField(max_length=4)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("revoke_apikey", "Can revoke API keys")]

    def __str__(self):
        return f"sk_{self.prefix}_…{self.last4}"


class IdempotencyKey(models.Model):
    """A request's Idempotency-Key, scoped to the merchant, with its response.

    ``key`` holds the key's HMAC digest (``services.idempotency.key_digest``),
    never the key as the client sent it.
    """

    # Two indexes only (every single payment writes one of these rows): the
    # primary key and the unique (merchant, key), which also serves the FK.
    # Purging walks the primary key: keys expire in insertion order.
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, db_index=False)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "key"], name="idempotency_key_per_merchant"
            )
        ]

    def __str__(self):
        return str(self.pk)


class PaymentBatch(models.Model):
    id = models.CharField(
        primary_key=True, max_length=40, default=pb_id, editable=False
    )
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="batches"
    )
    count = models.PositiveIntegerField()
    total_amount = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "payment batches"

    def __str__(self):
        return str(self.pk)


class Payment(models.Model):
    id = models.CharField(
        primary_key=True, max_length=40, default=pay_id, editable=False
    )
    # Indexes on this hot table are few on purpose, and none holds a column a
    # transition writes (status, updated_at, ...): then every transition is a
    # HOT update (no index entry at all) in the page space fillfactor leaves
    # (migration 0009). (merchant, -id) serves the merchant's list and the FK;
    # the sweeper finds open payments through OpenPayment, not an index here.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="payments", db_index=False
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    source = models.ForeignKey(
        "vault.Token", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    description = models.CharField(max_length=500, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    # The merchant's reference for its customer (risk velocity per customer).
    customer = models.CharField(max_length=128, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    failure_code = models.CharField(max_length=64, blank=True, default="")
    failure_message = models.CharField(max_length=255, blank=True, default="")
    gateway = models.CharField(max_length=32, blank=True, default="")
    gateway_reference = models.CharField(max_length=128, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    # The fee quote (enrich), which settle posts; settle computes it for a
    # payment that never went through enrich.
    fee = models.BigIntegerField(null=True, blank=True)
    # What the enrich stage attached: {"card": {brand, funding, country},
    # "route": {gateway, failover, reason}, "risk": {outcome, rule}}. Written
    # by the enriching transition itself, so it costs no statement of its own.
    enrichment = models.JSONField(default=dict, blank=True)
    reference = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001 (unique when set)
    batch = models.ForeignKey(
        PaymentBatch,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payments",
        db_index=False,  # partial index below: single payments have no batch
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "-id"], name="payment_merchant_id_desc"),
            models.Index(
                fields=["batch"],
                name="payment_batch",
                condition=Q(batch__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="payment_amount_gt_0"
            ),
            models.CheckConstraint(
                condition=Q(status__in=PaymentStatus.values),
                name="payment_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0)
                & Q(amount_refunded__lte=F("amount")),
                name="payment_refunded_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[a-z]{3}$"),
                name="payment_currency_lower3",
            ),
            models.UniqueConstraint(
                fields=["merchant", "reference"],
                condition=Q(reference__isnull=False),
                name="payment_reference_per_merchant",
            ),
        ]

    def __str__(self):
        return self.id


class OpenPayment(models.Model):
    """A payment that is not final yet: the sweeper's and the metrics' work list.

    Kept by database triggers on payments_payment (migration 0009), whatever
    writes the payment: a row goes in when a payment is inserted non-final and
    is deleted when its status becomes final. An index on payments (status)
    would do the same job but make every transition rewrite every index.
    """

    payment = models.OneToOneField(
        Payment,
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,  # the triggers keep it; a check would cost a lookup
        related_name="+",
    )
    opened_at = models.DateTimeField()

    def __str__(self):
        return str(self.payment_id)


class Event(models.Model):
    """The outbox: written in the same transaction as the change it announces,
    and the payment's audited history (``manage.py audit_events``).

    Append-only in the database: a trigger refuses a DELETE and any UPDATE
    but of ``published_at`` (the relay's publication state). The table is
    partitioned by month on ``id`` (an id leads with its time; "C" collation
    so bounds compare byte-wise): ``manage.py partitions`` and ``archive``,
    migration 0016.
    """

    id = models.CharField(
        primary_key=True,
        max_length=40,
        default=evt_id,
        editable=False,
        db_collation="C",
    )
    type = models.CharField(max_length=64)
    merchant_id = models.CharField(max_length=40)
    payment = models.ForeignKey(
        Payment,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        db_constraint=False,
        # No index: written five times per payment, read only by operators
        # (replay by payment scans; it is rare).
        db_index=False,
    )
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["id"],
                name="event_unpublished",
                condition=Q(published_at__isnull=True),
            ),
        ]

    def __str__(self):
        return str(self.pk)


class VelocityEntry(models.Model):
    """One payment counted by a velocity rule: its card fingerprint or customer
    reference (``key``), amount and acceptance time. Written by the enrich
    stage, in its transaction, only for merchants with that rule on; purged
    once older than the longest window (``risk_velocity_purge``)."""

    class Kind(models.TextChoices):
        CARD = "card"
        CUSTOMER = "customer"

    merchant_id = models.CharField(max_length=40)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    key = models.CharField(max_length=128)
    payment_id = models.CharField(max_length=40)
    amount = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "velocity entries"
        indexes = [
            models.Index(
                fields=["merchant_id", "kind", "key", "created_at"],
                name="velocity_window",
            ),
            models.Index(fields=["created_at"], name="velocity_created"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["payment_id", "kind"], name="velocity_once_per_payment"
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.payment_id}"


class Refund(models.Model):
    """A refund reserves funds (ledger + amount_refunded) before the gateway call;
    a failed gateway refund reverses both."""

    Status = RefundStatus

    id = models.CharField(
        primary_key=True, max_length=40, default=re_id, editable=False
    )
    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="refunds"
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    failure_code = models.CharField(max_length=64, blank=True, default="")
    gateway_reference = models.CharField(max_length=128, blank=True, default="")
    # Gateway calls that gave no answer; whether one of them may have reached
    # the gateway (then it is never failed: it may have been made); and when a
    # pending refund is next due (null: when the sweeper finds it stale).
    # See services.refunds.
    attempts = models.PositiveIntegerField(default=0)
    outcome_unknown = models.BooleanField(default=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="refund_pending_due",
                condition=Q(status="pending"),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="refund_amount_gt_0"
            ),
        ]

    def __str__(self):
        return str(self.pk)


class DeadLetter(models.Model):
    """A payment (or other work item) that needs a human: system failure or a break."""

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    id = models.CharField(
        primary_key=True, max_length=40, default=dl_id, editable=False
    )
    payment = models.ForeignKey(
        Payment,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="dead_letters",
    )
    stage = models.CharField(max_length=32)
    error_class = models.CharField(max_length=128)
    message = models.TextField()
    attempts = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.OPEN
    )
    resolution = models.TextField(blank=True, default="")
    # Escalation flags an open letter for a named owner; it stays open (the
    # one-open-letter-per-payment-and-stage rule and the pipeline's bumps of
    # the open letter are untouched) until someone resolves it.
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalated_to = models.CharField(max_length=150, blank=True, default="")
    escalation_note = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["status", "stage"], name="deadletter_status_stage")
        ]
        permissions = [
            ("retry_deadletter", "Can retry a dead letter's payment"),
            ("refund_deadletter", "Can refund a dead letter's payment"),
            ("resolve_deadletter", "Can resolve a dead letter"),
            ("escalate_deadletter", "Can escalate a dead letter"),
            ("review_deadletter", "Can approve or decline a payment in risk review"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["payment", "stage"],
                condition=Q(status="open"),
                name="deadletter_one_open_per_payment_stage",
            )
        ]

    def __str__(self):
        return str(self.pk)


class AuditLog(models.Model):
    """Who did what, when and why (dead-letter actions, key revocations, ...).

    ``reason`` is what the operator gave; ``detail`` what the action did.
    ``payment_id`` ties a record about a payment or one of its dead letters or
    refunds to the payment, so its admin page shows the whole trail.
    """

    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    payment_id = models.CharField(max_length=40, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
            models.Index(
                fields=["payment_id"],
                name="audit_payment",
                condition=~Q(payment_id=""),
            ),
        ]

    def __str__(self):
        return f"{self.actor} {self.action} {self.object_type} {self.object_id}"


def we_id():
    return new_id("we")


def whd_id():
    return new_id("whd")


class WebhookEndpoint(models.Model):
    """Where a merchant wants its events posted, signed with ``secret``.

    ``cursor`` is the id up to which the merchant's events have been turned into
    deliveries (see ``payments.services.webhooks.dispatch``).
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        DISABLED = "disabled"

    class DisabledCause(models.TextChoices):
        """Why a disabled endpoint is disabled; decides what re-enabling does."""

        NONE = "", "-"
        REQUESTED = "requested"  # by the merchant or an operator: starts afresh
        FAILING = "failing"  # by Surge after failing: resumes where it stopped

    id = models.CharField(
        primary_key=True, max_length=40, default=we_id, editable=False
    )
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.CharField(max_length=2048)
    description = models.CharField(max_length=500, blank=True, default="")
    # Standard Webhooks secret ("whsec_" + base64 of 24 random bytes), sealed
    # with the vault keyring; shown once, at creation or rotation.
    secret = EncryptedTextField()
    # After a rotation the replaced secret signs too, until it expires.
    previous_secret = EncryptedTextField(null=True, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # Event types to send; empty means every type.
    enabled_events = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    cursor = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_cause = models.CharField(
        max_length=16, choices=DisabledCause.choices, blank=True, default=""
    )
    # Shown to the merchant and in the admin while disabled.
    disabled_reason = models.CharField(max_length=300, blank=True, default="")
    # Start of the current run of failed attempts (None: the last one succeeded).
    failing_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("disable_webhookendpoint", "Can disable webhook endpoints")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["active", "disabled"]),
                name="webhook_endpoint_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(disabled_cause__in=["", "requested", "failing"]),
                name="webhook_endpoint_disabled_cause_valid",
            ),
        ]

    def __str__(self):
        return str(self.pk)


class WebhookDelivery(models.Model):
    """One event for one endpoint. Unique per (endpoint, event): dispatching the
    same event twice never delivers it twice. ``paused``: its endpoint was
    disabled for failing; re-enabling it makes the delivery pending again.

    Partitioned by month on ``event_id`` (its event's time), like the events,
    so the unique (endpoint, event) holds across partitions; in the database
    the primary key is (id, event_id), as a partition key must be in it.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        PAUSED = "paused"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.CharField(
        primary_key=True, max_length=40, default=whd_id, editable=False
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,  # (endpoint, -id) below serves the FK and the list
    )
    event_id = models.CharField(max_length=40, db_collation="C")
    event_type = models.CharField(max_length=64)
    payment_id = models.CharField(max_length=40, blank=True, default="")
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # When a pending delivery is next due; while claimed, the end of the lease.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # A short classification ("HTTP 500", "ReadTimeout", a refused address).
    last_error = models.CharField(max_length=200, blank=True, default="")
    # The first 4 KiB of the receiver's last answer, for support; never logged.
    last_response_body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        permissions = [("retry_webhookdelivery", "Can retry webhook deliveries")]
        indexes = [
            models.Index(
                fields=["endpoint", "-id"], name="webhook_delivery_endpoint_id"
            ),
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=Q(status="pending"),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="webhook_delivery_once"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "paused", "succeeded", "failed"]),
                name="webhook_delivery_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="pending") | Q(next_attempt_at__isnull=False),
                name="webhook_delivery_pending_is_scheduled",
            ),
        ]

    def __str__(self):
        return str(self.pk)
