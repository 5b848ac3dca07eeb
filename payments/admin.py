"""Admin: merchants and keys, payments with their whole story (card as brand
and last4 only), dead letters with retry / refund / resolve / escalate,
refunds, batches, events, audit records, webhook endpoints (never their
secret) and deliveries.

Every action calls a service in ``payments.services.operations`` and is gated
by a custom permission (``payments.roles``): a user without it is not offered
the action, and a POST of it anyway is refused (403) with nothing changed.
"""

import json
from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core.errors import SurgeError
from core.money import Money
from gateways.selectors import ROUTE_REASONS
from payments import selectors
from payments.models import (
    ApiKey,
    AuditLog,
    DeadLetter,
    Event,
    Merchant,
    Payment,
    PaymentBatch,
    Refund,
    WebhookDelivery,
    WebhookEndpoint,
)
from payments.services import operations, risk
from payments.services.enrich import REVIEW_STAGE


class ReadOnlyMixin:
    """Nothing is added, edited or deleted here: changes go through actions."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class GatedActionsMixin:
    """Refuse (403) a POSTed action the user is not offered.

    Django drops an action whose ``allowed_permissions`` the user lacks from
    the page, but a POST naming it anyway only gets the change list back;
    here it is refused outright, before any action code runs.
    """

    def changelist_view(self, request, extra_context=None):
        if request.method == "POST":
            offered = self.get_actions(request)
            named = [a for a in request.POST.getlist("action") if a]
            if any(name not in offered for name in named):
                raise PermissionDenied("That action is not yours to take.")
        return super().changelist_view(request, extra_context)

    @staticmethod
    def _has(request, codename: str) -> bool:
        return request.user.has_perm(f"payments.{codename}")


def _cell(value) -> object:
    if value is None or value == "":
        return "—"
    if isinstance(value, datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def _table(headers: tuple[str, ...], rows) -> str:
    """An HTML table of ``rows`` (every cell escaped); '—' when there are none."""
    rows = list(rows)
    if not rows:
        return "—"
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (format_html_join("", "<td>{}</td>", ((_cell(c),) for c in row)),)
            for row in rows
        ),
    )
    return format_html(
        "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body
    )


def _audit_table(records: list[AuditLog]) -> str:
    return _table(
        ("when", "who", "what", "on", "reason", "outcome"),
        (
            (
                r.created_at,
                r.actor,
                r.action,
                f"{r.object_type} {r.object_id}",
                r.reason,
                r.detail,
            )
            for r in records
        ),
    )


def _link(obj) -> str:
    opts = obj._meta
    url = reverse(
        f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)]
    )
    return format_html('<a href="{}">{}</a>', url, obj.pk)


class ApiKeyInline(ReadOnlyMixin, admin.TabularInline):
    model = ApiKey
    fields = ("id", "__str__", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    extra = 0


class MerchantForm(forms.ModelForm):
    """The risk rules go through the service's own checks (the command's too)."""

    class Meta:
        model = Merchant
        fields = "__all__"  # noqa: DJ007 (the admin edits every field)

    def clean(self):
        data = super().clean()
        changes = {f: data.get(f) for f in risk.MERCHANT_FIELDS if f in self.fields}
        try:
            data.update(risk.risk_rules_clean(changes))
        except SurgeError as exc:
            self.add_error(exc.param if exc.param in self.fields else None, exc.message)
        return data


@admin.register(Merchant)
class MerchantAdmin(GatedActionsMixin, admin.ModelAdmin):
    form = MerchantForm
    list_display = ("id", "name", "status", "primary_gateway", "secondary_gateway")
    list_filter = ("status",)
    search_fields = ("id", "name")
    readonly_fields = ("id", "created_at", "risk_summary")
    inlines = [ApiKeyInline]
    actions = ["revoke_keys"]

    def get_fieldsets(self, request, obj=None):
        rest = [
            f
            for f in self.get_fields(request, obj)
            if f not in risk.MERCHANT_FIELDS and f != "risk_summary"
        ]
        return [
            (None, {"fields": rest}),
            (
                "Risk rules",
                {
                    "fields": ("risk_summary", *risk.MERCHANT_FIELDS),
                    "description": (
                        "Blank is off. Windows in seconds (blank: the platform's "
                        "SURGE_RISK_VELOCITY_WINDOW_SECONDS); amounts in minor "
                        'units; countries as ISO codes, e.g. ["GB"]; BINs as '
                        'six digits, e.g. ["400000"]; outcomes override the '
                        'platform\'s per rule, e.g. {"amount_ceiling": '
                        '"block"}. See docs/configuration.md.'
                    ),
                },
            ),
        ]

    @admin.display(description="rules in force")
    def risk_summary(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        return format_html_join("", "<div>{}: {}</div>", risk.risk_rules_describe(obj))

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and set(form.changed_data) & set(risk.MERCHANT_FIELDS):
            operations.audit(
                actor=request.user.get_username(),
                action="merchant.risk_rules",
                obj=obj,
                detail="; ".join(
                    f"{rule}: {setting}"
                    for rule, setting in risk.risk_rules_describe(obj)
                ),
            )

    def has_revoke_apikey_permission(self, request):
        return self._has(request, "revoke_apikey")

    @admin.action(
        description="Revoke all API keys of the selected merchants",
        permissions=["revoke_apikey"],
    )
    def revoke_keys(self, request, queryset):
        actor = request.user.get_username()
        revoked = sum(
            operations.merchant_keys_revoke(merchant=m, actor=actor) for m in queryset
        )
        self.message_user(request, f"Keys revoked. ({revoked})", messages.SUCCESS)


# --- payments -----------------------------------------------------------------


def _story(payment: Payment) -> selectors.PaymentStory:
    """Read once per page, however many sections show it."""
    story = getattr(payment, "_admin_story", None)
    if story is None:
        story = payment._admin_story = selectors.payment_story(payment=payment)
    return story


@admin.register(Payment)
class PaymentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """A payment's whole story on one page. The card appears as brand and
    last4 only (from the vault); the token id links nowhere near a number."""

    list_display = ("id", "merchant", "money", "status", "failure_code", "created_at")
    list_filter = ("status", "currency", "gateway")
    search_fields = ("=id", "=reference", "=gateway_reference")
    list_select_related = ("merchant",)
    show_full_result_count = False
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "merchant",
                    "money",
                    "refunded",
                    "status",
                    "failure_code",
                    "failure_message",
                    "card",
                    "customer",
                    "risk",
                    "description",
                    "metadata",
                    "reference",
                    "batch",
                    "fee",
                    "created_at",
                    "updated_at",
                    "settled_at",
                )
            },
        ),
        (
            "Gateway",
            {
                "fields": (
                    "gateway",
                    "gateway_reference",
                    "attempts",
                    "routed",
                    "route",
                    "gateway_attempts",
                )
            },
        ),
        ("Timeline", {"fields": ("timeline",)}),
        ("Refunds", {"fields": ("refund_list",)}),
        ("Ledger", {"fields": ("ledger",)}),
        ("Dead letters", {"fields": ("dead_letter_list",)}),
        ("Audit trail", {"fields": ("audit_trail",)}),
    )
    readonly_fields = [f for _, opts in fieldsets for f in opts["fields"]]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("merchant")

    @admin.display(description="amount")
    def money(self, obj):
        return str(Money(obj.amount, obj.currency))

    @admin.display(description="refunded")
    def refunded(self, obj):
        return str(Money(obj.amount_refunded, obj.currency))

    @admin.display(description="card")
    def card(self, obj):
        summary = _story(obj).card
        if summary is None:
            return "—"
        brand, last4 = summary
        return f"{brand} •••• {last4} ({obj.source_id})"

    @admin.display(description="risk (enrich)")
    def risk(self, obj):
        verdict = obj.enrichment.get("risk")
        card = obj.enrichment.get("card") or {}
        if verdict is None:
            return "— (not enriched yet)"
        rule = f" by {verdict['rule']}" if verdict.get("rule") else ""
        return (
            f"{verdict['outcome']}{rule}; card funding "
            f"{card.get('funding') or 'unknown'}, country "
            f"{card.get('country') or 'unknown'}"
        )

    @admin.display(description="routed (enrich)")
    def routed(self, obj):
        route = obj.enrichment.get("route")
        if route is None:
            return "—"
        failover = f", failover {route['failover']}" if route.get("failover") else ""
        why = ROUTE_REASONS.get(route["reason"], route["reason"])
        return f"{route['gateway']}{failover}: {why}"

    @admin.display(description="route (gateway: idempotency key)")
    def route(self, obj):
        return format_html_join(
            "", "<div>{}</div>", ((k,) for k in _story(obj).route_keys)
        )

    @admin.display(description="attempts the gateway recorded")
    def gateway_attempts(self, obj):
        return _table(
            ("when", "gateway", "kind", "key", "reference", "status", "code", "amount"),
            (
                (
                    a.created_at,
                    a.gateway,
                    a.kind,
                    a.idempotency_key,
                    a.reference,
                    a.status,
                    a.decline_code,
                    Money(a.amount, a.currency),
                )
                for a in _story(obj).gateway_attempts
            ),
        )

    @admin.display(description="events")
    def timeline(self, obj):
        return _table(
            ("when", "event", "type", "data", "published"),
            (
                (e.created_at, e.pk, e.type, e.data, e.published_at)
                for e in _story(obj).events
            ),
        )

    @admin.display(description="refunds")
    def refund_list(self, obj):
        return _table(
            ("refund", "amount", "status", "failure", "gateway reference", "created"),
            (
                (
                    _link(r),
                    Money(r.amount, r.currency),
                    r.status,
                    r.failure_code,
                    r.gateway_reference,
                    r.created_at,
                )
                for r in _story(obj).refunds
            ),
        )

    @admin.display(description="ledger postings")
    def ledger(self, obj):
        return _table(
            ("entry", "kind", "reference", "account", "direction", "amount", "when"),
            (
                (
                    p.entry_id,
                    p.kind,
                    p.reference,
                    p.account,
                    p.direction,
                    Money(p.amount, p.currency),
                    p.created_at,
                )
                for p in _story(obj).postings
            ),
        )

    @admin.display(description="dead letters")
    def dead_letter_list(self, obj):
        return _table(
            ("dead letter", "stage", "error", "state", "attempts", "first seen"),
            (
                (_link(d), d.stage, d.error_class, _state(d), d.attempts, d.first_seen)
                for d in _story(obj).dead_letters
            ),
        )

    @admin.display(description="audit records")
    def audit_trail(self, obj):
        return _audit_table(_story(obj).audit)


@admin.register(Refund)
class RefundAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "payment", "money", "status", "failure_code", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("=id", "=payment__id", "=gateway_reference")
    show_full_result_count = False
    fields = readonly_fields = (
        "id",
        "payment",
        "money",
        "status",
        "failure_code",
        "gateway_reference",
        "created_at",
        "audit_trail",
    )

    @admin.display(description="amount")
    def money(self, obj):
        return str(Money(obj.amount, obj.currency))

    @admin.display(description="audit records")
    def audit_trail(self, obj):
        return _audit_table(selectors.audit_records_for(obj=obj))


@admin.register(PaymentBatch)
class PaymentBatchAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "merchant", "count", "total_amount", "created_at")
    search_fields = ("=id", "=merchant__id")
    list_select_related = ("merchant",)
    show_full_result_count = False
    fields = readonly_fields = ("id", "merchant", "count", "total_amount", "created_at")


# --- dead letters ---------------------------------------------------------------


def _state(dead_letter: DeadLetter) -> str:
    if dead_letter.status == DeadLetter.Status.RESOLVED:
        return "resolved"
    return "escalated" if dead_letter.escalated_at else "open"


class DeadLetterStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "open"), ("escalated", "escalated"), ("resolved", "resolved"))

    def queryset(self, request, queryset):
        open_ = DeadLetter.Status.OPEN
        if self.value() == "open":
            return queryset.filter(status=open_, escalated_at__isnull=True)
        if self.value() == "escalated":
            return queryset.filter(status=open_, escalated_at__isnull=False)
        if self.value() == "resolved":
            return queryset.filter(status=DeadLetter.Status.RESOLVED)
        return queryset


class DeadLetterAgeFilter(admin.SimpleListFilter):
    """How long ago the letter was first opened."""

    title = "age"
    parameter_name = "age"
    HOUR, DAY = timedelta(hours=1), timedelta(days=1)

    def lookups(self, request, model_admin):
        return (
            ("1h", "less than 1 hour"),
            ("1d", "less than 1 day"),
            ("older", "older"),
        )

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "1h":
            return queryset.filter(first_seen__gte=now - self.HOUR)
        if self.value() == "1d":
            return queryset.filter(first_seen__gte=now - self.DAY)
        if self.value() == "older":
            return queryset.filter(first_seen__lt=now - self.DAY)
        return queryset


class RefundForm(forms.Form):
    amount = forms.IntegerField(
        required=False,
        min_value=1,
        help_text="In minor units (cents). Blank: refund what is left in full.",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


class ResolveForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


class EscalateForm(forms.Form):
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(),
        to_field_name=get_user_model().USERNAME_FIELD,
        help_text="The person who owns it from now on.",
    )
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = (
            get_user_model()
            .objects.filter(is_active=True, is_staff=True)
            .order_by(get_user_model().USERNAME_FIELD)
        )


@admin.register(DeadLetter)
class DeadLetterAdmin(GatedActionsMixin, ReadOnlyMixin, admin.ModelAdmin):
    change_form_template = "admin/payments/deadletter/change_form.html"
    list_display = (
        "id",
        "stage",
        "error_class",
        "payment",
        "attempts",
        "state",
        "escalated_to",
        "first_seen",
        "last_seen",
    )
    list_filter = (DeadLetterStateFilter, "stage", "error_class", DeadLetterAgeFilter)
    search_fields = ("=id", "=payment__id")
    search_help_text = "A dead letter's id or its payment's id."
    fields = readonly_fields = (
        "id",
        "payment",
        "payment_status",
        "stage",
        "error_class",
        "message",
        "attempts",
        "first_seen",
        "last_seen",
        "state",
        "resolution",
        "escalated_at",
        "escalated_to",
        "escalation_note",
        "audit_trail",
    )
    actions = ["retry", "refund", "resolve", "escalate", "approve", "decline"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("payment")

    @admin.display(description="state")
    def state(self, obj):
        return _state(obj)

    @admin.display(description="payment status")
    def payment_status(self, obj):
        if obj.payment is None:
            return "—"
        p = obj.payment
        failure = f" ({p.failure_code})" if p.failure_code else ""
        return f"{p.status}{failure}, {Money(p.amount, p.currency)}"

    @admin.display(description="audit records")
    def audit_trail(self, obj):
        return _audit_table(selectors.audit_records_for(obj=obj))

    # Each action is offered to holders of its permission only.
    def has_retry_deadletter_permission(self, request):
        return self._has(request, "retry_deadletter")

    def has_refund_deadletter_permission(self, request):
        return self._has(request, "refund_deadletter")

    def has_resolve_deadletter_permission(self, request):
        return self._has(request, "resolve_deadletter")

    def has_escalate_deadletter_permission(self, request):
        return self._has(request, "escalate_deadletter")

    def has_review_deadletter_permission(self, request):
        return self._has(request, "review_deadletter")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The page offers the actions this user may take, as buttons; on a
        resolved letter only a refund is left to do."""
        offered = self.get_actions(request)
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and obj.status == DeadLetter.Status.RESOLVED:
            offered = {k: v for k, v in offered.items() if k == "refund"}
        elif obj is not None and obj.stage != REVIEW_STAGE:
            offered = {k: v for k, v in offered.items() if k not in _REVIEW_ACTIONS}
        extra_context = {
            **(extra_context or {}),
            "dead_letter_actions": [
                (name, label) for name, (_, _, label) in offered.items()
            ],
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # --- the actions ------------------------------------------------------------

    def _report(self, request, results) -> None:
        for dead_letter, outcome in results:
            level = messages.SUCCESS if outcome.done else messages.WARNING
            self.message_user(
                request, f"Dead letter {dead_letter.pk}: {outcome}", level
            )

    def _back(self, request, queryset):
        """From a letter's own page, back to it; else (None) to the list."""
        if request.POST.get("_from_page") and len(queryset) == 1:
            obj = queryset[0]
            return HttpResponseRedirect(
                reverse("admin:payments_deadletter_change", args=[quote(obj.pk)])
            )
        return None

    def _form_page(self, request, queryset, *, action, form, title, submit):
        return TemplateResponse(
            request,
            "admin/payments/deadletter/action_form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": title,
                "action": action,
                "form": form,
                "submit": submit,
                "dead_letters": queryset,
                "from_page": bool(request.POST.get("_from_page")),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
            # A submitted form that is not valid is bad input: 400, nothing done.
            status=400 if form.is_bound else 200,
        )

    def _with_form(self, request, queryset, *, action, form_class, title, submit, run):
        """An intermediate page asks for the action's input; its submission
        (``apply``) comes back here through the same gated action."""
        queryset = list(queryset.select_related("payment"))
        form = form_class(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                results = run(form.cleaned_data, queryset)
            except SurgeError as exc:  # input the service refused: nothing done
                field = exc.param if exc.param in form.fields else None
                form.add_error(field, exc.message)
            else:
                self._report(request, results)
                return self._back(request, queryset)
        return self._form_page(
            request, queryset, action=action, form=form, title=title, submit=submit
        )

    @admin.action(
        description="Retry: re-drive the payment (only if provably uncharged)",
        permissions=["retry_deadletter"],
    )
    def retry(self, request, queryset):
        queryset = list(queryset.select_related("payment"))
        self._report(
            request,
            operations.dead_letter_act(
                operations.dead_letter_retry,
                queryset,
                actor=request.user.get_username(),
                reason="retried from the admin",
            ),
        )
        return self._back(request, queryset)

    @admin.action(
        description="Refund the payment (full or partial)",
        permissions=["refund_deadletter"],
    )
    def refund(self, request, queryset):
        def run(data, letters):
            if data["amount"] is not None and len(letters) != 1:
                raise SurgeError(
                    "A partial amount is for one dead letter at a time.",
                    param="amount",
                )
            return operations.dead_letter_act(
                operations.dead_letter_refund,
                letters,
                actor=request.user.get_username(),
                amount=data["amount"],
                reason=data["reason"],
            )

        return self._with_form(
            request,
            queryset,
            action="refund",
            form_class=RefundForm,
            title="Refund the payments of these dead letters",
            submit="Refund",
            run=run,
        )

    @admin.action(
        description="Resolve (a reason is required)",
        permissions=["resolve_deadletter"],
    )
    def resolve(self, request, queryset):
        return self._with_form(
            request,
            queryset,
            action="resolve",
            form_class=ResolveForm,
            title="Resolve these dead letters",
            submit="Resolve",
            run=lambda data, letters: operations.dead_letter_act(
                operations.dead_letter_close,
                letters,
                actor=request.user.get_username(),
                note=data["reason"],
            ),
        )

    @admin.action(
        description="Escalate to an owner, with a note",
        permissions=["escalate_deadletter"],
    )
    def escalate(self, request, queryset):
        return self._with_form(
            request,
            queryset,
            action="escalate",
            form_class=EscalateForm,
            title="Escalate these dead letters",
            submit="Escalate",
            run=lambda data, letters: operations.dead_letter_act(
                operations.dead_letter_escalate,
                letters,
                actor=request.user.get_username(),
                owner=data["owner"].get_username(),
                note=data["note"],
            ),
        )

    def _review(self, request, queryset, *, action, verb, service):
        return self._with_form(
            request,
            queryset,
            action=action,
            form_class=ResolveForm,
            title=f"{verb} these payments held for risk review",
            submit=verb,
            run=lambda data, letters: operations.dead_letter_act(
                service,
                letters,
                actor=request.user.get_username(),
                reason=data["reason"],
            ),
        )

    @admin.action(
        description="Approve the risk review: the payment goes on to execute",
        permissions=["review_deadletter"],
    )
    def approve(self, request, queryset):
        return self._review(
            request,
            queryset,
            action="approve",
            verb="Approve",
            service=operations.review_approve,
        )

    @admin.action(
        description="Decline the risk review: the payment is declined",
        permissions=["review_deadletter"],
    )
    def decline(self, request, queryset):
        return self._review(
            request,
            queryset,
            action="decline",
            verb="Decline",
            service=operations.review_decline,
        )


_REVIEW_ACTIONS = ("approve", "decline")


# --- events, audit, webhooks ------------------------------------------------------


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "type", "payment_id", "created_at", "published_at")
    list_filter = ("type",)
    search_fields = ("=id", "=payment__id")
    show_full_result_count = False


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "payment_id",
        "reason",
    )
    list_filter = ("action", "object_type")
    search_fields = ("=actor", "=object_id", "=payment_id")
    show_full_result_count = False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(GatedActionsMixin, ReadOnlyMixin, admin.ModelAdmin):
    """Endpoints are created through the API (the secret is shown once,
    there); the secret column is never rendered here."""

    list_display = ("id", "merchant", "url", "status", "disabled_reason", "created_at")
    list_filter = ("status",)
    search_fields = ("id", "merchant__id", "url")
    list_select_related = ("merchant",)
    fields = readonly_fields = (
        "id",
        "merchant",
        "url",
        "enabled_events",
        "status",
        "cursor",
        "created_at",
        "disabled_at",
        "disabled_reason",
    )
    actions = ["disable"]

    def has_disable_webhookendpoint_permission(self, request):
        return self._has(request, "disable_webhookendpoint")

    @admin.action(
        description="Disable: stop sending events to these endpoints",
        permissions=["disable_webhookendpoint"],
    )
    def disable(self, request, queryset):
        actor = request.user.get_username()
        for endpoint in queryset.filter(status=WebhookEndpoint.Status.ACTIVE):
            operations.webhook_endpoint_disable(endpoint=endpoint, actor=actor)
            self.message_user(request, f"{endpoint.pk}: disabled", messages.INFO)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(GatedActionsMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "endpoint",
        "event_type",
        "event_id",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
    )
    list_filter = ("status", "event_type")
    search_fields = ("id", "event_id", "payment_id", "endpoint__id")
    show_full_result_count = False
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["retry_now"]

    def has_retry_webhookdelivery_permission(self, request):
        return self._has(request, "retry_webhookdelivery")

    @admin.action(
        description="Retry now: one more attempt for failed deliveries",
        permissions=["retry_webhookdelivery"],
    )
    def retry_now(self, request, queryset):
        actor = request.user.get_username()
        for delivery in queryset:
            outcome = operations.webhook_delivery_retry_now(
                delivery=delivery, actor=actor
            )
            self.message_user(request, f"{delivery.pk}: {outcome}", messages.INFO)
