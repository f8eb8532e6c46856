# alertrelay: a non-root image serving on 0.0.0.0:8080 with SQLite in a volume.
# docker build -t alertrelay --build-arg GIT_COMMIT=$(git rev-parse --short HEAD) .

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[postgres,otel]'

FROM python:3.11-slim
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
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels 'alertrelay[postgres,otel]' \
 && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/alertrelay
VOLUME ["/var/lib/alertrelay"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/live', timeout=3)"]
STOPSIGNAL SIGTERM
CMD ["alertrelay", "serve", "--host", "0.0.0.0"]
