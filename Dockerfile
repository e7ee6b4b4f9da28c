# One image for the relayer, the simulated venues and the compose bootstrap.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential libgmp-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY relayer relayer
COPY feeds feeds
COPY aggregation aggregation
COPY contracts-abi contracts-abi
COPY docker docker
# Editable install: the contract artifacts are read from /app/contracts-abi.
RUN pip install -e . && useradd --create-home relayer
USER relayer
EXPOSE 9000 8788
ENTRYPOINT ["relayer"]
CMD ["--help"]
