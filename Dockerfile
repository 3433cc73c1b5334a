# The image every sweep service runs: api, worker, dashboard and the one-off migrate.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# torch first, in its own layer: the biggest download, and it changes least often.
# On Linux the PyPI build of torch is the CUDA one; pass --build-arg TORCH=… for another.
ARG TORCH=torch==2.13.0
RUN pip install "${TORCH}"

COPY pyproject.toml README.md ./
COPY sweep ./sweep
COPY api ./api
COPY migrations ./migrations
RUN pip install .

RUN useradd --create-home --uid 10001 sweep
USER sweep

EXPOSE 8000 8080
CMD ["sweep", "--help"]
