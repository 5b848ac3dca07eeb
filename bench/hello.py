"""A WSGI hello-world: the floor of a Python web tier on this box.

No framework, no database: what a server costs to parse a request, call the
application and write its answer. ``python -m bench.floors`` runs it under
each server it compares.
"""

BODY = b'{"ok":true}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    wsgi_input = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        wsgi_input.read(length)  # a request body is read, as an API's is
    start_response("200 OK", HEADERS)
    return [BODY]
