# syntax=docker/dockerfile:1
# The together-operator image: `together-operator run` as a non-root user on a read-only root
# filesystem. Build: docker build -t together-operator:<version> . (the version: pyproject.toml)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: the project's wheel plus a wheel of every dependency --------------------------
FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- final: a venv holding only those wheels; no compilers, no pip ----------------------------
FROM ${PYTHON_IMAGE}
# Nothing is written at run time: byte code is compiled at install, logs go to stderr.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The wheels come in through a bind mount, so they never become a layer of the final image.
# The base image's pip installs into the venv, which gets no pip of its own. The image's UID
# gets a passwd entry: kopf names its peering identity after getpass.getuser(), which fails
# for a UID without one (and the container has no USER variable).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-index \
    --find-links /wheels together-operator \
 && groupadd --system --gid 65532 together-operator \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin together-operator
# Only after the RUN above: there, `python` must still be the base image's (with pip).
ENV PATH=/opt/venv/bin:$PATH
# A numeric UID/GID so that Kubernetes can verify runAsNonRoot.
USER 65532:65532
# kopf's /healthz (--liveness-port) and Prometheus /metrics (--metrics-port), as deploy/ uses them.
EXPOSE 8080 8081
ENTRYPOINT ["together-operator"]
CMD ["run"]
