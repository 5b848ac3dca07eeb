"""The operators' roles: Django groups and the permissions each one holds.

``support`` looks: it may view merchants, payments, events, dead letters,
refunds, audit records, webhooks and batches, and act on nothing.
``payments_ops`` may also act: every admin action is gated by one of the
custom permissions below (``allowed_permissions``), so a support user is not
offered the action and a forged POST of it is refused. Superusers hold every
permission. A person also needs ``is_staff`` to sign in to the admin.

Installed by migration 0012 and by ``install_roles`` (idempotent: it adds
what is missing and leaves other permissions a group was given alone).
"""

# The codenames (all in the payments app) of the permissions each role holds.
SUPPORT: tuple[str, ...] = tuple(
    f"view_{model}"
    for model in (
        "merchant",
        "apikey",
        "payment",
        "paymentbatch",
        "event",
        "deadletter",
        "refund",
        "auditlog",
        "webhookendpoint",
        "webhookdelivery",
    )
)

# The custom permissions: each gates one admin action (payments/admin.py).
ACTIONS: tuple[str, ...] = (
    "retry_deadletter",
    "refund_deadletter",
    "resolve_deadletter",
    "escalate_deadletter",
    "review_deadletter",
    "revoke_apikey",
    "disable_webhookendpoint",
    "retry_webhookdelivery",
)

ROLES: dict[str, tuple[str, ...]] = {
    "support": SUPPORT,
    "payments_ops": SUPPORT + ACTIONS,
}


def install_roles(apps) -> None:
    """Create the groups and give them their permissions.

    ``apps`` is a migration's historical registry or ``django.apps.apps``.
    Custom permissions are created by ``post_migrate``, after every
    migration, so they are created here first when they are missing.
    """
    # deferred: django.contrib.auth's management module is only for this
    # one-off install (a migration or a test's fresh database).
    from django.contrib.auth.management import create_permissions

    config = apps.get_app_config("payments")
    stub = getattr(config, "models_module", None) is None  # historical config
    if stub:
        config.models_module = True
    try:
        create_permissions(config, apps=apps, verbosity=0)
    finally:
        if stub:
            config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, perms in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        wanted = list(
            permission_model.objects.filter(
                content_type__app_label="payments", codename__in=perms
            )
        )
        missing = set(perms) - {p.codename for p in wanted}
        # A migration's historical models may predate a custom permission
        # (review_deadletter came with 0016): that migration installs it.
        declared = {c for m in config.get_models() for c, _ in m._meta.permissions}
        missing -= {p for p in missing if not p.startswith("view_")} - declared
        if missing:
            raise LookupError(f"permissions missing for {name}: {sorted(missing)}")
        group.permissions.add(*wanted)
