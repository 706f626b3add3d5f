#!/bin/bash
# Artifact "kernel": Debian's dom0-capable kernel (also the domU kernel).
# In: KERNEL_RELEASE (6.1.0-NN-amd64), KERNEL_VERSION (package version).
# Out: $OUT/vmlinuz (bzImage, for QEMU), $OUT/vmlinux (uncompressed ELF: libxenguest
#      decompresses xz slowly under TCG), $OUT/modules/lib/modules/$KERNEL_RELEASE (+depmod)
set -euo pipefail
cd "$WORK"
apt-get download -q "linux-image-$KERNEL_RELEASE=$KERNEL_VERSION"
dpkg-deb -x linux-image-"$KERNEL_RELEASE"_*.deb x
cp "x/boot/vmlinuz-$KERNEL_RELEASE" "$OUT/vmlinuz"
cp "x/boot/config-$KERNEL_RELEASE" "$OUT/config"
mkdir -p "$OUT/modules/lib/modules"
mv "x/lib/modules/$KERNEL_RELEASE" "$OUT/modules/lib/modules/"
depmod -b "$OUT/modules" "$KERNEL_RELEASE"
python3 - "$OUT/vmlinuz" "$OUT/vmlinux" <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")
if start < 0:
    sys.exit("no xz stream in " + sys.argv[1])
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
if elf[:4] != b"\x7fELF":
    sys.exit("decompressed kernel is not an ELF image")
open(sys.argv[2], "wb").write(elf)
PY
