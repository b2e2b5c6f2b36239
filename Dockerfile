# lic-fpga with its pinned Python stack and the system packages FINN's Vivado flow needs.
# Vivado / Vitis HLS are NOT in the image (licence, ~100 GB): mount your installation, as FINN's own
# docker flow does. From the repository root:
#
#   docker build -t lic-fpga .
#   docker run --rm lic-fpga make test                       # no Vivado needed
#   docker run --rm -v "$PWD/fpga_projects:/lic/fpga_projects" lic-fpga make hw BOARD=pynq-z2
#   docker run --rm \
#     -v /tools/Xilinx:/tools/Xilinx:ro \
#     -e XILINX_VIVADO=/tools/Xilinx/Vivado/2024.2 -e XILINX_HLS=/tools/Xilinx/Vitis_HLS/2024.2 \
#     -v "$PWD/fpga_projects:/lic/fpga_projects" -v "$PWD/build:/lic/build" \
#     lic-fpga make bitstream BOARD=pynq-z2
#
# The entrypoint sources Vivado's settings64.sh when XILINX_VIVADO is set and fetches FINN's HDL/HLS
# dependencies (finn-hlslib, board files, nlohmann-json: `finn deps update`) into build/finn_deps
# (FINN_DEPS) on first use; FINN and the project's cppsim both read them there.
# On machines other than ours, torch 2.13.0's CPU build comes from PyTorch's CPU index (PyPI's
# Linux wheel of the same version is the CUDA build).
#
# System packages, and who needs them (finn-plus 1.6.1):
#   build-essential (g++ with libgomp)   finn_xsi's CMake build: C++20, OpenMP (find_package(OpenMP));
#                                        finn/xsi/setup.py compiles xsi.so with g++; cppsim compiles with g++
#   libboost-program-options-dev         finn_xsi/CMakeLists.txt: find_package(Boost COMPONENTS program_options)
#   nlohmann-json3-dev                   the JSON library finn_xsi writes its results with; FINN itself builds
#                                        against the copy `finn deps update` fetches (FINN_DEPS/nlohmann_json)
#   git, wget, unzip                     `finn deps update`: git clones (finn-hlslib, board files), wget
#                                        downloads (PYNQ-Z2 board files, nlohmann-json), unzip
#   libtinfo5 libncurses5 libx11-6 libxext6 libxrender1 libxtst6 libxi6 libglib2.0-0 libsm6 libc6-dev-i386
#                                        Vivado / Vitis HLS at run time (FINN's own docker/Dockerfile.finn
#                                        and installDependencies.sh list the same X11/glib/i386 libraries)
#   locales                              Vivado wants a UTF-8 locale
# `make preflight BOARD=...` in the container checks all of it, with your Vivado mounted.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential make git wget unzip zip \
      libboost-program-options-dev nlohmann-json3-dev zlib1g-dev \
      libtinfo5 libncurses5 libx11-6 libxext6 libxrender1 libxtst6 libxi6 libglib2.0-0 libsm6 \
      locales \
 && if [ "$(dpkg --print-architecture)" = amd64 ]; then apt-get install -y --no-install-recommends libc6-dev-i386; fi \
 && sed -i 's/^# *en_US.UTF-8/en_US.UTF-8/' /etc/locale.gen && locale-gen \
 && rm -rf /var/lib/apt/lists/*
ENV LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8
WORKDIR /lic
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_NO_CACHE_DIR=1 \
    FINN_DEPS=/lic/build/finn_deps
COPY . .
RUN make setup PYTHON=python3.11
ENTRYPOINT ["hls/docker_entrypoint.sh"]
CMD ["make", "test"]
