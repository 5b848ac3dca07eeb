"""Re-seal every vault value under the active key (the first in VAULT_KEYS).

    manage.py rotate_vault_keys [--batch-size 500] [--dry-run] [--no-progress]

Order: deploy VAULT_KEYS="new:<b64>,old:<b64>" to every process, run this,
then drop the old key. Resumable (re-run it), safe while payments run.
"""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from vault.crypto import get_keyring
from vault.services import encrypted_field_models, rotate_keys, tokens_to_rotate

MAX_LISTED_FAILURES = 20


class Command(BaseCommand):
    help = "Re-seal vault tokens and encrypted fields under the active key."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Open every stale value and count; write nothing.",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *, batch_size: int, dry_run: bool, no_progress: bool, **_):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        ring = get_keyring()
        targets = encrypted_field_models()
        total = tokens_to_rotate(keyring=ring) + sum(
            model._base_manager.count() for model, _ in targets
        )
        resealed = skipped = 0
        failed: list[str] = []
        with tqdm(
            total=total,
            unit="row",
            desc=f"re-sealing under {ring.active_id}",
            disable=no_progress,
        ) as bar:
            for step in rotate_keys(
                batch_size=batch_size,
                dry_run=dry_run,
                models_with_fields=targets,
                keyring=ring,
            ):
                resealed += step.resealed
                skipped += step.skipped
                failed.extend(step.failed)
                bar.update(step.scanned)
        verb = "Would re-seal" if dry_run else "Re-sealed"
        self.stdout.write(
            f"{verb} {resealed} values under key {ring.active_id!r} "
            f"(keyring {list(ring.key_ids)}); {skipped} changed concurrently "
            f"(re-run to pick them up); {len(failed)} failed to open."
        )
        if failed:
            listed = ", ".join(failed[:MAX_LISTED_FAILURES])
            more = len(failed) - MAX_LISTED_FAILURES
            raise CommandError(
                f"Cannot open {len(failed)} values: {listed}"
                + (f" and {more} more" if more > 0 else "")
                + ". Keep every old key in VAULT_KEYS until this is resolved."
            )
        if not dry_run and not skipped:
            old = [k for k in ring.key_ids if k != ring.active_id]
            if old:
                self.stdout.write(
                    f"Nothing is sealed under {old} any more: they can be removed "
                    "from VAULT_KEYS once every process runs with the new ring."
                )
