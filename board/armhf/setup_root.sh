#!/usr/bin/env bash
# Build (once) the ARM userland `make arm-check` / `make board-rate` run the board's half of decoding
# in: Debian's own python3.11, numpy and Pillow for ARCH, unpacked without a chroot and run under
# qemu-user (`qemu-arm -L ROOT ROOT/usr/bin/python3.11 ...`), plus Debian's cross compiler for ARCH.
#   ARCH armhf  PYNQ-Z2's Cortex-A9 (default; ROOT default build/armhf-root)
#   ARCH arm64  ZCU104's / KV260's Cortex-A53 (ROOT default build/arm64-root)
# Needs root (apt-get) and Debian's archive; everything lands in ROOT.
#   board/armhf/setup_root.sh [ROOT] [ARCH]
set -euo pipefail
ARCH=${2:-armhf}
ROOT=${1:-build/$ARCH-root}
case $ARCH in
  armhf) TRIPLET=arm-linux-gnueabihf; QEMU=qemu-arm ;;
  arm64) TRIPLET=aarch64-linux-gnu; QEMU=qemu-aarch64 ;;
  *) echo "setup_root.sh: unknown ARCH '$ARCH' (armhf or arm64)" >&2; exit 1 ;;
esac
STAMP=$ROOT/.complete
[[ -f $STAMP ]] && exit 0

# qemu-user: the dynamic qemu-ARCH loads TCG plugins (block profiles); qemu-user-static does not.
# llvm: llvm-mca, the core model of `lic board-rate` (board/arm_cycles.py).
HOST_PKGS="qemu-user qemu-user-static gcc-$TRIPLET llvm"
# What the board's half imports: python3.11 + stdlib, numpy (OpenBLAS), Pillow (PNG), and their libraries.
ARM_PKGS="libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libzstd1
 libncursesw6 libtinfo6 libreadline8 libuuid1 libsqlite3-0 libcrypt1 libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3
 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libdb5.3 libgdbm6
 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
 python3-numpy libopenblas0-pthread libgfortran5
 python3-pil libjpeg62-turbo libpng16-16 libtiff6 libdeflate0 libjbig0 liblerc4 libwebp7 libwebpmux3 libwebpdemux2
 libopenjp2-7 liblcms2-2 libimagequant0 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 libfreetype6 libbrotli1 libgomp1"

if [[ $(id -u) -ne 0 ]]; then
  echo "setting up $ROOT needs root (apt-get install $HOST_PKGS; dpkg --add-architecture $ARCH)" >&2
  exit 1
fi
missing=""
for p in $HOST_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
  dpkg --add-architecture "$ARCH"
  need_update=1
fi
if [[ -n $missing || -n ${need_update:-} ]] || ! apt-cache show "python3.11-minimal:$ARCH" >/dev/null 2>&1; then
  apt-get update -q || true   # an unrelated broken source must not stop us; the next steps fail loudly if Debian's did
fi
[[ -n $missing ]] && apt-get install -y -q $missing

DEBS=$ROOT.debs
mkdir -p "$DEBS" "$ROOT"
(cd "$DEBS" && for p in $ARM_PKGS; do ls "${p}"_*_"$ARCH".deb >/dev/null 2>&1 || echo "$p:$ARCH"; done \
  | xargs -r apt-get download -q 2>&1 | grep -v "unsandboxed" || true)
for deb in "$DEBS"/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
# Debian picks the BLAS through update-alternatives, which never ran here: point numpy at OpenBLAS.
lib=$ROOT/usr/lib/$TRIPLET
for so in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  src=$(ls "$lib"/openblas-pthread/"$so" 2>/dev/null || ls "$lib"/openblas-pthread/libopenblas*.so* | head -1)
  ln -sf "openblas-pthread/$(basename "$src")" "$lib/$so"
done
"$QEMU-static" -L "$ROOT" "$ROOT/usr/bin/python3.11" -c \
  'import numpy, PIL.Image, io, platform; PIL.Image.new("RGB", (4, 4)).save(io.BytesIO(), "PNG"); print("'"$ARCH"' root:", platform.machine(), "python", platform.python_version(), "numpy", numpy.__version__, "Pillow", PIL.__version__)'
touch "$STAMP"
