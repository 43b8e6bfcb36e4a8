# The nowplaying server: a build stage makes a virtualenv holding the package and its
# dependencies; the runtime stage copies it onto the same base and runs it as an unprivileged
# user, with a HEALTHCHECK on /healthz.
#
#   docker build -t nowplaying .
#   docker run -p 8000:8000 --env-file .env nowplaying
#
# Build arguments:
#   BASE         any Debian-based image with python3 (3.11+) and its venv module; the default is
#                the official Python image. CI builds on a Debian rootfs it makes itself
#                (tests/test_container.py), since no registry is reachable there.
#   PIP_OPTIONS  extra pip arguments, e.g. "--no-index --find-links /src/wheels" to build offline
#                from wheels put in ./wheels (.dockerignore lets that folder in).
ARG BASE=python:3.12-slim-bookworm

FROM ${BASE} AS build
ARG PIP_OPTIONS=""
LABEL org.nowplaying.stage=build
COPY . /src
RUN python3 -m venv /opt/nowplaying \
 && /opt/nowplaying/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_OPTIONS} /src \
 && /opt/nowplaying/bin/pip uninstall --yes --quiet pip \
 && find /opt/nowplaying -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE}
# The fonts the PNG cards draw text with (src/nowplaying/cards/fonts.txt): installed unless the
# base already has them (the offline test build's base does; it has no network).
COPY --from=build /src/src/nowplaying/cards/fonts.txt /tmp/fonts.txt
RUN missing="$(for p in $(cat /tmp/fonts.txt); do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)" \
 && if [ -n "$missing" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $missing \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && rm /tmp/fonts.txt
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home --shell /usr/sbin/nologin nowplaying
COPY --from=build /opt/nowplaying /opt/nowplaying
# HOST and PORT are read by the command below, not by nowplaying itself. SQLite (the default
# database) lives in /data; for several instances set NOWPLAYING_DATABASE_URL and
# NOWPLAYING_REDIS_URL (compose.yaml does).
ENV PATH=/opt/nowplaying/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000
USER nowplaying
WORKDIR /data
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PORT'], timeout=2)"]
# SIGTERM drains every event stream and exits within NOWPLAYING_SHUTDOWN_SECONDS (default 10):
# give `docker stop` more time than that (compose.yaml: stop_grace_period: 15s).
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "exec nowplaying serve --host \"$HOST\" --port \"$PORT\""]
