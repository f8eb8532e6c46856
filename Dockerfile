# alertrelay: a non-root image serving on 0.0.0.0:8080 with SQLite in a volume.
# docker build -t alertrelay --build-arg GIT_COMMIT=$(git rev-parse --short HEAD) .
#
# The base image is pinned by version (the Python that constraints.txt was
# resolved with); every Python package comes from constraints.txt, the same
# exact versions CI tests with.

FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint constraints.txt '.[postgres,otel]'

FROM python:3.11.7-slim-bookworm
ARG GIT_COMMIT=unknown
ARG BUILD_TIME=unknown
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ALERTRELAY_GIT_COMMIT=${GIT_COMMIT} \
    ALERTRELAY_BUILD_TIME=${BUILD_TIME} \
    ALERTRELAY_DATABASE_URL=sqlite:////var/lib/alertrelay/alertrelay.db
RUN groupadd --system --gid 10001 alertrelay \
 && useradd --system --uid 10001 --gid alertrelay --home-dir /var/lib/alertrelay --shell /usr/sbin/nologin alertrelay \
 && mkdir -p /var/lib/alertrelay /etc/alertrelay \
 && chown alertrelay:alertrelay /var/lib/alertrelay
COPY constraints.txt /etc/alertrelay/constraints.txt
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels \
      --constraint /etc/alertrelay/constraints.txt 'alertrelay[postgres,otel]' \
 && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/alertrelay
VOLUME ["/var/lib/alertrelay"]
EXPOSE 8080
# `status --live` finds the port as `serve` does (ALERTRELAY_PORT, or
# server.port in the ALERTRELAY_CONFIG file), so a moved port stays checked.
# Docker wants 0 (healthy) or 1 (unhealthy): CRITICAL 2 and UNKNOWN 3 become 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["sh", "-c", "alertrelay status --live --timeout 3 || exit 1"]
STOPSIGNAL SIGTERM
CMD ["alertrelay", "serve", "--host", "0.0.0.0"]
