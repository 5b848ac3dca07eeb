"""Operators for the admin tests: staff users in the real roles."""

from django.apps import apps
from django.contrib.auth.models import Group, User

from payments.roles import install_roles

PASSWORD = "a-long-test-password-1"


def operator(username: str, role: str | None) -> User:
    """A staff user in ``role`` (a group from payments.roles), or a superuser
    for role "superuser", or in no group for None."""
    if role == "superuser":
        return User.objects.create_superuser(
            username, f"{username}@example.com", PASSWORD
        )
    # The groups come from migration 0012; a transactional test's flush
    # empties them, so put them back (the migration's own function).
    install_roles(apps)
    user = User.objects.create_user(
        username, f"{username}@example.com", PASSWORD, is_staff=True
    )
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return user
