# opentune on an NVIDIA GPU host: docker build -t opentune . && docker run --gpus all -p 8000:8000 opentune
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends build-essential make git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/opentune
COPY pyproject.toml README.md Makefile ./
COPY service ./service
COPY trainer ./trainer
RUN make install ENGINE=gpu

ENV OPENTUNE_HOST=0.0.0.0 OPENTUNE_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
ENTRYPOINT [".venv/bin/opentune", "serve"]
