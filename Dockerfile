# opentune on an NVIDIA GPU host:
#   docker build -t opentune .
#   docker run --gpus all -p 8000:8000 -e OPENTUNE_API_KEY=sk-your-secret opentune
# The server binds 0.0.0.0 in the container, so it refuses to start without a key (exit status 2):
# give OPENTUNE_API_KEY, or create keys in the data volume first
#   docker run -v opentune-data:/data --entrypoint .venv/bin/opentune opentune keys create --org acme
# or, only behind something else that authenticates, run open on purpose with --insecure-no-auth
# (or -e OPENTUNE_INSECURE_NO_AUTH=1).
FROM python:3.11-slim

# bubblewrap: the python graders' sandbox (it needs user namespaces: see the README's Graders section).
RUN apt-get update && apt-get install -y --no-install-recommends build-essential make git bubblewrap \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/opentune
COPY pyproject.toml README.md Makefile ./
COPY service ./service
COPY trainer ./trainer
# Ray too (the `cluster` extra): the same image runs gateways and Ray nodes (deploy/cluster/).
RUN make install ENGINE=gpu && .venv/bin/pip install --quiet -e ".[gpu,cluster,wandb]"

ENV OPENTUNE_HOST=0.0.0.0 OPENTUNE_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
ENTRYPOINT [".venv/bin/opentune", "serve"]
