# One image for every Packyard process: web (the default), worker and migrations.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PACKYARD_DATA_DIR=/data

RUN useradd --create-home --uid 10001 --user-group packyard \
    && mkdir -p /data \
    && chown packyard:packyard /data

WORKDIR /srv/packyard
COPY pyproject.toml README.md wsgi.py ./
COPY app ./app
COPY plugins ./plugins
COPY workers ./workers
COPY packyard ./packyard
RUN pip install .

USER packyard
# Package files (file://) and, without PostgreSQL, the SQLite database and its queue.
VOLUME ["/data"]
EXPOSE 8080

CMD ["packyard", "serve", "--no-worker", "--host", "0.0.0.0", "--port", "8080"]
