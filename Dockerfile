# driftline worker image: `docker build -t driftline .`; run with docker-compose.yml.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# All dependencies ship manylinux wheels for CPython 3.11, so no compiler is needed.
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY detectors ./detectors
RUN pip install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 driftline \
    && useradd --system --uid 10001 --gid driftline --home-dir /app --no-create-home driftline
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY config /app/config
USER driftline
# faust web server: /metrics (Prometheus) and /healthz
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=4)"]
CMD ["driftline", "worker", "--config", "/app/config/driftline.yaml", "--web-port", "6066"]
