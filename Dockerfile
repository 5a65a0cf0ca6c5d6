# syntax=docker/dockerfile:1
#
# mam-bot as a container image (issue 17, item 1).
#
#   docker build -t mam-bot .            (or: make image)
#   docker run --rm --read-only --tmpfs /tmp --env-file .env -e DATABASE_URL=postgresql://… mam-bot run
#   docker run … -p 3000:3000 mam-bot serve --host 0.0.0.0 --port 3000
#
# - Two stages: the builder turns the source into wheels (the bot's and every dependency's); the runtime
#   stage installs them from those wheels only (no compiler, no source tree, no network).
# - Runs as uid 10001, never root, and works with a read-only root filesystem: the only place written
#   is /tmp (HOME and TMPDIR point there), so mount a writable volume or tmpfs at /tmp.
# - DATABASE_URL is set to empty here on purpose, so start-up stops with one line naming it until you set it:
#   the default SQLite file (./mam-bot.db) would be on the read-only filesystem and lost with the container.
#   Use PostgreSQL, or a SQLite file on a volume (DATABASE_URL=sqlite:////data/mam-bot.db).
# - HEALTHCHECK: GET /healthz on the operator's port, 127.0.0.1:${MAM_METRICS_PORT:-9464}, which `mam-bot run`
#   and `mam-bot serve` both open (with /livez and /metrics; MAM_METRICS_HOST is 0.0.0.0 here so Prometheus can
#   scrape it from outside the container). 503 while the database is unreachable, Socket Mode is not connected,
#   or the bot is stopping. Publish 9464 only to your monitoring network, never to the internet.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY bot ./bot
COPY commands ./commands
COPY workflows ./workflows
# the bot's wheel and a wheel of each dependency, so the runtime stage installs offline
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/mam-bot/bin:$PATH
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/mam-bot \
    && /opt/mam-bot/bin/pip install --no-index --find-links /wheels mam-bot \
    && /opt/mam-bot/bin/pip uninstall --yes pip \
    && groupadd --system --gid 10001 mam-bot \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin mam-bot \
    && mkdir -p /srv/mam-bot
# /srv/mam-bot: an empty, read-only working directory (the bot would read a .env file from it; give settings
# as environment variables instead). HOME and TMPDIR: the writable /tmp volume.
WORKDIR /srv/mam-bot
ENV HOME=/tmp \
    TMPDIR=/tmp \
    DATABASE_URL="" \
    MAM_METRICS_HOST=0.0.0.0 \
    MAM_METRICS_PORT=9464
USER 10001:10001
# 3000: `serve`'s Slack port (/slack/events, /healthz); 9464: the operator's (/metrics, /healthz, /livez)
EXPOSE 3000 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('MAM_METRICS_PORT') or '9464'), timeout=2)"]
ENTRYPOINT ["mam-bot"]
CMD ["run"]
