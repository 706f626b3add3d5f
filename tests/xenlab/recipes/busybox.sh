#!/bin/bash
# Artifact "busybox": a static busybox for the initramfs images.
# In: BUSYBOX_VERSION.  Out: $OUT/busybox
set -euo pipefail
cd "$WORK"
apt-get download -q "busybox-static=$BUSYBOX_VERSION"
dpkg-deb -x busybox-static_*.deb x
install -m755 x/bin/busybox "$OUT/busybox"
