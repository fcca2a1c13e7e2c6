# pika-payment: one image for every process (ingress, worker, relay,
# migrate, expire, reconcile). The subcommand is the container's CMD/args:
#
#   docker build -t pika-payment .
#   docker run --rm -p 5505:5505 --env-file .env pika-payment            # ingress
#   docker run --rm --env-file .env pika-payment worker                  # ledger worker
#
# Needs BuildKit (the default builder since Docker 23) for the cache/bind mounts.

# ---------------------------------------------------------------------------
# Stage 1: build the project wheel plus wheels for all of its dependencies.
# ---------------------------------------------------------------------------
# The base image: pin it by digest where images are built (CI, release), e.g.
#   docker buildx build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
# with the digest `docker buildx imagetools inspect python:3.11-slim` prints; a tag
# alone moves under you. Both stages use the same one.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# .dockerignore keeps tests, VCS data, caches and deploy files out of the context.
COPY . .
# Dependencies exactly as locked (every file's hash checked), then the project alone;
# requirements/prod.lock has no test, benchmark or local-stack package, and the wheel
# has no devtools/ (the development toolkit; .dockerignore leaves it out of the context).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --require-hashes --wheel-dir /wheels -r requirements/prod.lock \
    && pip wheel --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------
# Stage 2: slim runtime, installs only the wheels (no compiler, no sources).
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PAYMENT_SERVICE_PORT=5505

# Fixed numeric uid/gid so Kubernetes `runAsNonRoot` can verify it
# (k8s/base sets runAsUser/runAsGroup to the same 10001).
RUN groupadd --system --gid 10001 pika \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin pika

# pip byte-compiles at install time, so the app runs fine on a read-only root fs.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels pika-payment

# `pika-payment migrate` reads alembic.ini and migrations/ from the working dir.
WORKDIR /app
COPY alembic.ini ./alembic.ini
COPY migrations/ ./migrations/

USER 10001:10001

EXPOSE 5505

# Only meaningful for `ingress`; docker-compose replaces it for worker, relay and
# notify (their /ready on METRICS_PORT), disables it for the one-shot jobs, and
# Kubernetes ignores it (it uses the probes in k8s/base).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('PAYMENT_SERVICE_PORT', '5505'); r = urllib.request.urlopen(f'http://127.0.0.1:{port}/payment/health', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["pika-payment"]
CMD ["ingress"]
