# qx-dsr: API and worker in one image. Run `dsr serve --no-worker` for API replicas and
# `dsr worker` for workers, all pointed at one PostgreSQL through DSR_DATABASE_URL.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DSR_ENV=prod \
    DSR_DATA_DIR=/data

RUN groupadd --system dsr && useradd --system --gid dsr --home-dir /app --shell /usr/sbin/nologin dsr

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install . && mkdir -p /data && chown dsr:dsr /data

USER dsr
EXPOSE 8000
VOLUME ["/data"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["dsr"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
