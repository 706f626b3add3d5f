#!/bin/bash
# Artifact "xen": the hypervisor as a 32-bit multiboot ELF that `qemu -kernel` loads.
# In: XEN_PACKAGE, XEN_VERSION.  Out: $OUT/xen.elf
set -euo pipefail
cd "$WORK"
apt-get download -q "$XEN_PACKAGE=$XEN_VERSION"
dpkg-deb -x "${XEN_PACKAGE}"_*.deb x
gz=$(ls x/boot/xen-*.gz | head -1)
gunzip -c "$gz" > "$OUT/xen.elf"
file "$OUT/xen.elf" 2>/dev/null || true
