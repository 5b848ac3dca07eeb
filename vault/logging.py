"""Where PAN detection used to live; it is ``core.pan`` now.

Kept only for payments/services/{batches,idempotency}.py and
payments/api/serializers.py, which are being rewritten elsewhere and still
import ``contains_pan`` from here. Import ``core.pan``; delete this module once
nothing names it (tests/test_architecture.py refuses any new importer).
"""

from core.pan import contains_pan, redact_pans

__all__ = ["contains_pan", "redact_pans"]
