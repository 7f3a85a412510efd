# One image for every eventshop process; the command picks the role:
#   docker run eventshop gateway|relay|stock-worker|projector|all|migrate|devstack up
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/app/.venv/bin:$PATH

RUN groupadd --system --gid 10001 eventshop \
 && useradd --system --uid 10001 --gid eventshop --create-home --home-dir /home/eventshop \
      --shell /usr/sbin/nologin eventshop

WORKDIR /app

# Dependencies first, so this layer is rebuilt only when the lock changes. Every requirement,
# setuptools and wheel included, is pinned by hash; pip refuses anything else.
COPY requirements.lock ./
RUN python -m venv /app/.venv \
 && /app/.venv/bin/pip install --require-hashes -r requirements.lock

# The project itself, installed editable: `eventshop migrate` finds alembic.ini and migrations/
# next to the packages, exactly as in a checkout.
COPY pyproject.toml README.md alembic.ini ./
COPY eventshop ./eventshop
COPY shared ./shared
COPY command ./command
COPY projection ./projection
COPY gateway ./gateway
COPY devstack ./devstack
COPY migrations ./migrations
RUN /app/.venv/bin/pip install --no-deps --no-build-isolation -e . \
 && mkdir -p /app/.devstack \
 && chown eventshop:eventshop /app/.devstack

USER eventshop

EXPOSE 8000

# Meaningful for the gateway (and `eventshop all`); docker-compose.yml disables it for the workers.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=4)"]

ENTRYPOINT ["eventshop"]
CMD ["all"]
