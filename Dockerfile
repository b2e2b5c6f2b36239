# lic-fpga with its pinned Python stack. Build from the repository root:
#   docker build -t lic-fpga .
#   docker run --rm -v "$PWD/build:/lic/build" lic-fpga make demo
# On machines other than ours, torch 2.13.0's CPU build comes from PyTorch's CPU index (PyPI's
# Linux wheel of the same version is the CUDA build).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential make git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /lic
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_NO_CACHE_DIR=1
COPY . .
RUN make setup PYTHON=python3.11
CMD ["make", "test"]
