"""``EncryptedTextField``: a secret column sealed with the vault keyring.

For webhook signing secrets, gateway credentials and the like::

    class WebhookEndpoint(models.Model):
        id = models.CharField(primary_key=True, default=wh_id, ...)
        secret = EncryptedTextField()

    endpoint.secret = "whsec_..."   # plaintext str in Python
    endpoint.save()                  # sealed under the active key on save
    endpoint.secret                  # opened on each read; never cached

The column holds the vault's sealed format, bound to model, field and primary
key, so a value copied to another row or column does not open. Rules:

* the primary key must be known before the first save (a Python-side default
  such as ``core.ids.new_id``), because it is part of the associated data;
* seal through ``save()`` / ``create()`` / ``bulk_create()``; ``QuerySet.update``
  and ``bulk_update`` with plaintext are refused (they do not know the row);
* no lookups on plaintext; ``.values()`` returns the sealed bytes (``Sealed``);
* ``manage.py rotate_vault_keys`` re-seals these columns with the tokens.
"""

from __future__ import annotations

import base64

from django.db import models
from django.db.models.query_utils import DeferredAttribute

from vault.crypto import seal_text, unseal_text

_SERIALIZED_PREFIX = "sealed:v1:"


class Sealed(bytes):
    """A sealed value as stored (not opened); what ``.values()`` returns."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Sealed(<{len(self)} bytes>)"


class EncryptedAttribute(DeferredAttribute):
    """Opens the sealed value on read; stores plaintext until the next save."""

    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Sealed):
            return unseal_text(value, context=self.field.context_for(instance.pk))
        return value

    def __set__(self, instance, value) -> None:
        if isinstance(value, memoryview | bytes) and not isinstance(value, Sealed):
            raise TypeError(
                f"{self.field.name} takes a str; sealing happens on save()."
            )
        if value is not None and not isinstance(value, str | Sealed):
            raise TypeError(f"{self.field.name} takes a str.")
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.BinaryField):
    description = "Text sealed with the vault keyring (AES-256-GCM)"
    descriptor_class = EncryptedAttribute

    def get_default(self):
        # BinaryField turns the empty default into b""; here it is empty text.
        return models.Field.get_default(self)

    def context_for(self, pk) -> str:
        if pk is None:
            raise ValueError(
                f"{self.model._meta.label}.{self.name} needs the primary key set "
                "before saving (it binds the sealed value to the row)."
            )
        return f"field|{self.model._meta.label_lower}.{self.attname}|{pk}"

    def raw_value(self, instance) -> str | Sealed | None:
        """What the instance holds: plaintext (unsaved), ``Sealed`` or None."""
        return instance.__dict__.get(self.attname)

    def pre_save(self, model_instance, add):
        value = self.raw_value(model_instance)
        if isinstance(value, str):
            value = Sealed(
                seal_text(value, context=self.context_for(model_instance.pk))
            )
            model_instance.__dict__[self.attname] = value
        return value

    def get_prep_value(self, value):
        if isinstance(value, str):
            raise TypeError(
                f"{self.name}: plaintext cannot be sealed here (no row); assign it "
                "to the instance and call save()."
            )
        return super().get_prep_value(value)

    def from_db_value(self, value, expression, connection):
        return None if value is None else Sealed(bytes(value))

    def to_python(self, value):
        if isinstance(value, str) and value.startswith(_SERIALIZED_PREFIX):
            return Sealed(base64.b64decode(value[len(_SERIALIZED_PREFIX) :]))
        if isinstance(value, memoryview | bytes) and not isinstance(value, Sealed):
            return Sealed(bytes(value))
        return value

    def value_from_object(self, obj):
        return self.raw_value(obj)

    def value_to_string(self, obj) -> str:
        """dumpdata writes the sealed bytes, never the plaintext."""
        value = self.raw_value(obj)
        if value is None:
            return ""
        if isinstance(value, str):
            raise ValueError(f"{self.name} must be saved before it is serialized.")
        return _SERIALIZED_PREFIX + base64.b64encode(value).decode("ascii")


def encrypted_fields(model: type[models.Model]) -> list[EncryptedTextField]:
    return [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
