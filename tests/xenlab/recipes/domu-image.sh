#!/bin/bash
# Artifact "domu-image": the testbed's root filesystem as an ext4 image, as
# an image "built elsewhere" arrives: a plain Debian root (sshd, dpkg-dev,
# apt with deb-src and package lists). adt-xen-image, inside dom0, copies it
# into the origin and makes it a testbed (init, the runner's key, fstab,
# sshd settings).
# In: DEP_DOMU_ROOTFS, IMAGE_SIZE.  Out: $OUT/domu.img
set -euo pipefail
truncate -s "$IMAGE_SIZE" "$OUT/domu.img"
mkfs.ext4 -q -F -L testbed-root -d "$DEP_DOMU_ROOTFS/root" "$OUT/domu.img"
