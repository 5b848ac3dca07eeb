# Production image: slim base, non-root user, gunicorn (gthread).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SURGE_ENV=production SURGE_VAR_DIR=/var/lib/surge
WORKDIR /app
COPY requirements.txt requirements.lock ./
RUN pip install -r requirements.txt -c requirements.lock
COPY . .
RUN useradd --system --uid 10001 --home /app surge \
    && mkdir -p /var/lib/surge && chown surge /var/lib/surge \
    && SECRET_KEY=build DATABASE_URL=sqlite:////tmp/build.sqlite3 \
       VAULT_KEYS=k0:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
       VAULT_FINGERPRINT_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
       python manage.py collectstatic --noinput \
    && rm -f /tmp/build.sqlite3
USER surge
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", \
     "--worker-class", "gthread", "--workers", "2", "--threads", "8", \
     "--max-requests", "100000", "--max-requests-jitter", "5000"]
