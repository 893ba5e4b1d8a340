# The orchestral-stream worker. Built by docker-compose.yml; configure it by environment.
FROM python:3.11-slim

WORKDIR /app
# The dependencies first, from the lock file alone (exact versions, hashes checked): a change to
# the sources reuses this layer instead of reinstalling faust, rocksdict and the rest.
COPY requirements/main.lock ./requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/main.lock
COPY pyproject.toml README.md ./
COPY processors processors
COPY schemas schemas
COPY config config
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 orchestral \
    && mkdir -p /var/lib/orchestral \
    && chown orchestral /var/lib/orchestral

USER orchestral
# Inside a container the metrics port must listen beyond loopback to be published;
# docker-compose.yml publishes it on the host's 127.0.0.1 only.
ENV ORCHESTRAL_DATA_DIR=/var/lib/orchestral \
    ORCHESTRAL_WEB_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
VOLUME /var/lib/orchestral
EXPOSE 6066
STOPSIGNAL SIGTERM
CMD ["orchestral-stream", "worker"]
