#!/bin/bash
# Artifact "domu-image": the testbed's root filesystem as an ext4 image, to be
# copied into the origin LV by the image tool inside dom0.
# In: DEP_DOMU_ROOTFS, DEP_SSHKEY, DOMU_INIT, IMAGE_SIZE.  Out: $OUT/domu.img
set -euo pipefail
stage="$WORK/stage"
cp -a "$DEP_DOMU_ROOTFS/root" "$stage"
install -m755 "$DOMU_INIT" "$stage/sbin/domu-init"
install -d -m700 "$stage/root/.ssh"
install -m600 "$DEP_SSHKEY/id_ed25519.pub" "$stage/root/.ssh/authorized_keys"
echo testbed > "$stage/etc/hostname"
ln -sf /run/resolv.conf "$stage/etc/resolv.conf"
ln -sf /run/hosts "$stage/etc/hosts"
echo '/dev/xvda / ext4 defaults,errors=remount-ro 0 1' > "$stage/etc/fstab"
cat > "$stage/etc/ssh/sshd_config.d/autopkgtest-xen.conf" <<CONF
# a testbed is reached by key only, from dom0; no reverse DNS under emulation
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
PrintLastLog no
CONF
truncate -s "$IMAGE_SIZE" "$OUT/domu.img"
mkfs.ext4 -q -F -L testbed-root -d "$stage" "$OUT/domu.img"
