"""JSON encoders made once.

``json.dumps`` reuses its module-level encoder only when called with no
options; with ``separators`` or ``sort_keys`` it builds a new JSONEncoder on
every call, work that does not depend on the value, and the hot paths encode
several small values per payment. Encoders keep no state between calls,
so threads share them, as they share ``json.dumps``'s own.
"""

import json

# Separators without spaces: the same text json.dumps(obj, separators=(",", ":")).
compact = json.JSONEncoder(separators=(",", ":")).encode

# Key order and layout fixed, anything else as str: a body's identity for hashing.
canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
