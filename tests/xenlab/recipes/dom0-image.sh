#!/bin/bash
# Artifact "dom0-image": dom0's root disk: the dom0 rootfs + the kernel's
# modules + the lab's init/units + the domU kernel and initramfs + the key.
# In: DEP_DOM0_ROOTFS DEP_KERNEL DEP_INITRAMFS_DOMU DEP_SSHKEY KERNEL_RELEASE
#     LAB_FILES (dir of files to install, see dom0/) IMAGE_SIZE
# Out: $OUT/dom0.img
set -euo pipefail
stage="$WORK/stage"
cp -a "$DEP_DOM0_ROOTFS/root" "$stage"
mkdir -p "$stage/lib/modules"
cp -a "$DEP_KERNEL/modules/lib/modules/$KERNEL_RELEASE" "$stage/lib/modules/"
# what dom0 hands to each testbed domain
lab="$stage/var/lib/autopkgtest-xen-lab"
install -d "$lab"
cp "$DEP_KERNEL/vmlinux" "$lab/vmlinux"
cp "$DEP_INITRAMFS_DOMU/initrd.cpio" "$lab/initrd.cpio"
install -d -m700 "$stage/root/.ssh"
install -m600 "$DEP_SSHKEY/id_ed25519" "$stage/root/.ssh/id_ed25519"
install -m644 "$DEP_SSHKEY/id_ed25519.pub" "$stage/root/.ssh/id_ed25519.pub"
# the lab's own programs and units
install -m755 "$LAB_FILES"/xenlab-init "$LAB_FILES"/xenlab-net "$LAB_FILES"/xenlab-job "$stage/usr/local/sbin/"
install -m644 "$LAB_FILES"/xenlab-net.service "$LAB_FILES"/xenlab-job.service "$stage/etc/systemd/system/"
install -d "$stage/etc/systemd/system/multi-user.target.wants" "$stage/etc/systemd/system/systemd-udev-trigger.service.d"
ln -sf ../xenlab-net.service "$stage/etc/systemd/system/multi-user.target.wants/xenlab-net.service"
ln -sf ../xenlab-job.service "$stage/etc/systemd/system/multi-user.target.wants/xenlab-job.service"
install -m644 "$LAB_FILES"/modules-load.conf "$stage/etc/modules-load.d/xenlab.conf"
install -m644 "$LAB_FILES"/udev-trigger.conf "$stage/etc/systemd/system/systemd-udev-trigger.service.d/xenlab.conf"
# units a headless emulated host does not need (each costs seconds under TCG)
for u in getty@tty1.service serial-getty@hvc0.service console-getty.service \
         apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
         fstrim.timer dpkg-db-backup.timer systemd-timesyncd.service \
         systemd-networkd-wait-online.service xendomains.service; do
  ln -sf /dev/null "$stage/etc/systemd/system/$u"
done
mkdir -p "$stage/share" "$stage/var/log/xen/console"
grep -q '^XENCONSOLED_ARGS=.*log-dir' "$stage/etc/default/xen" 2>/dev/null ||
  echo 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console --timestamp=guest"' >> "$stage/etc/default/xen"
echo dom0 > "$stage/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 dom0\n' > "$stage/etc/hosts"
echo 'nameserver 10.0.2.3' > "$stage/etc/resolv.conf"
cat > "$stage/etc/fstab" <<FSTAB
/dev/vda / ext4 rw,errors=remount-ro 0 1
share /share 9p trans=virtio,version=9p2000.L,msize=262144,nofail 0 0
FSTAB
: > "$stage/etc/machine-id"
truncate -s "$IMAGE_SIZE" "$OUT/dom0.img"
mkfs.ext4 -q -F -L dom0-root -d "$stage" "$OUT/dom0.img"
