# Production image: slim base, non-root user, granian (WSGI).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SURGE_ENV=production SURGE_VAR_DIR=/var/lib/surge
WORKDIR /app
COPY requirements.txt requirements.lock ./
RUN pip install -r requirements.txt -c requirements.lock
COPY . .
# Static files (the admin's, the offline API docs') are collected into the
# image and served by whitenoise from the web server; collectstatic opens no database
# connection, so the URL below only has to be a valid PostgreSQL one.
RUN useradd --system --uid 10001 --home /app surge \
    && mkdir -p /var/lib/surge && chown surge /var/lib/surge \
    && SECRET_KEY=build DATABASE_URL=postgres://build@127.0.0.1:5432/build \
       VAULT_KEYS=k0:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
       VAULT_FINGERPRINT_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
       python manage.py collectstatic --noinput \
    && rm -rf /var/lib/surge/*
USER surge
EXPOSE 8000
# Liveness, not readiness: an orchestrator that restarts unhealthy containers
# must not restart every web process because PostgreSQL or Redis is away
# (restarts fix neither); compose's web service checks /health/ready instead,
# for `depends_on` and `docker compose up --wait`. Python's urllib, because the
# slim image has no curl; it fails on any status but 2xx. Containers of this
# image that serve no HTTP on 8000 (worker, relay, beat) override it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
# granian: HTTP parsed in Rust, the Django app in 8 threads a process; a
# worker that dies is respawned and one past 512 MB replaced (gunicorn's
# --max-requests did the latter). Why granian: bench/RESULTS.md (issue #21).
CMD ["granian", "--interface", "wsgi", "--no-ws", "--host", "0.0.0.0", \
     "--port", "8000", "--workers", "2", "--blocking-threads", "8", \
     "--respawn-failed-workers", "--workers-max-rss", "512", \
     "--workers-kill-timeout", "30", "--log-level", "info", \
     "config.wsgi:application"]
