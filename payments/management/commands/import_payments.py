import contextlib
import csv
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from payments.api.serializers import batch_items_validate
from payments.models import Merchant
from payments.services.batches import MAX_BATCH, payment_batch_create, validate_items

_INT_FIELDS = ("amount",)


def _row_to_item(row: dict) -> dict:
    """CSV cells are text: amount must be all digits (no '10.5', no '1e3')."""
    item: dict = {k: v for k, v in row.items() if k and v not in (None, "")}
    raw = item.get("amount")
    if isinstance(raw, str) and raw.strip().isdigit():
        item["amount"] = int(raw.strip())
    if "metadata" in item:
        with contextlib.suppress(ValueError):  # a string stays: validation reports it
            item["metadata"] = json.loads(item["metadata"])
    return item


class Command(BaseCommand):
    help = (
        "Import a payroll CSV (amount,currency,source,reference[,description]) "
        "for a merchant. Valid rows are accepted in batches of 1,000; rejected "
        "rows are written to a report."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--merchant", required=True)
        parser.add_argument("--report", default=None, help="rejected rows (CSV)")

    def handle(self, *args, file, merchant, report, **opts):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"No such file: {file}")
        found = Merchant.objects.filter(pk=merchant).first()
        if found is None:
            raise CommandError(f"No such merchant: {merchant}")
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"amount", "currency", "source", "reference"} - set(
                reader.fieldnames or []
            )
            if missing:
                raise CommandError(f"CSV lacks columns: {', '.join(sorted(missing))}")
            rows = list(reader)
        accepted = 0
        rejected: list[dict] = []
        with tqdm(total=len(rows), unit="row", disable=None) as bar:
            for start in range(0, len(rows), MAX_BATCH):
                chunk = rows[start : start + MAX_BATCH]
                # The API's rules for each row's shape, then the merchant's.
                parsed, errors = batch_items_validate([_row_to_item(r) for r in chunk])
                valid, problems = validate_items(merchant=found, items=parsed)
                for error in sorted([*errors, *problems], key=lambda e: e["index"]):
                    rejected.append(
                        {
                            "line": start + error["index"] + 2,  # header is line 1
                            "field": error["param"],
                            "error": error["message"],
                        }
                    )
                if valid:
                    payment_batch_create(merchant=found, items=[i for _, i in valid])
                    accepted += len(valid)
                bar.update(len(chunk))
        report_path = Path(report) if report else path.with_suffix(".rejected.csv")
        if rejected:
            with report_path.open("w", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=["line", "field", "error"])
                writer.writeheader()
                writer.writerows(rejected)
        self.stdout.write(
            f"accepted {accepted} payment(s); rejected {len(rejected)} problem(s)"
            + (f"; report: {report_path}" if rejected else "")
        )
