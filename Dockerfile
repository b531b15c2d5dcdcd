# syntax=docker/dockerfile:1
# botenv's one image: the operator, the model server and the CLI. The entrypoint is the
# `botenv` console script, so the first argument picks the component:
#
#   docker build -t botenv .
#   docker run --rm botenv version
#   docker run --rm botenv operator --leader-elect --health-address 0.0.0.0:8081
#   docker run --rm botenv model-server --port 8080 --cache-dir /var/cache/botenv/models
#
# It runs as the unprivileged user 10001 and needs no writable root filesystem (the Helm chart
# mounts /tmp and the model cache as volumes).
#
# Python 3.12.11 or later: the June 2025 releases fixed tarfile's extraction filters
# (CVE-2025-4517, CVE-2025-4330, CVE-2025-4138, CVE-2024-12718, CVE-2025-4435).
# `botenv fetch-project` unpacks untrusted project archives: it checks every member and
# writes the files itself, without tarfile's extraction, but the image ships no tarfile with
# those flaws. The builder refuses a base image without the fixes (os.path.ALLOW_MISSING
# came with them).
ARG PYTHON_VERSION=3.12.11

# -- builder: a virtualenv with botenv, its server extra (the cloud storage SDKs) and their
#    dependencies at the tested versions
FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -c "import os.path; os.path.ALLOW_MISSING" \
    && python -m venv /opt/botenv
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
RUN /opt/botenv/bin/pip install '.[server]' -c constraints.txt \
    && /opt/botenv/bin/botenv version

# -- runtime: the virtualenv on a slim Python, nothing else --------------------------------
FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/botenv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 botenv \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin botenv \
    && mkdir -p /var/cache/botenv/models \
    && chown -R 10001:10001 /var/cache/botenv
COPY --from=builder /opt/botenv /opt/botenv
USER 10001:10001
# 8080: model server (models, /healthz, /readyz, /metrics); 8081: operator /healthz.
EXPOSE 8080 8081
ENTRYPOINT ["botenv"]
CMD ["--help"]
