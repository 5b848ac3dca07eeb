"""The baseline for intake efficiency: a bare DRF endpoint doing one INSERT.

Mounted only by ``bench.urls`` (``DJANGO_SETTINGS_MODULE=bench.settings``); no auth, no idempotency, no outbox.
"""

import json

from django.db import connection
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

DDL = (
    "CREATE TABLE IF NOT EXISTS bench_baseline "
    "(id bigserial PRIMARY KEY, body jsonb NOT NULL, "
    "created_at timestamptz DEFAULT now())"
)


class BaselineInsertView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def post(self, request):
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_baseline (body) VALUES (%s) RETURNING id",
                [json.dumps(request.data, default=str)],
            )
            (row_id,) = cursor.fetchone()
        return Response({"id": row_id}, status=201)
