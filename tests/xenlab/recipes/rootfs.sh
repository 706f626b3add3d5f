#!/bin/bash
# Artifact "<x>-rootfs": a debootstrapped Debian tree with a package list installed
# from the suite, its -updates and its -security (so xen-utils matches the hypervisor
# the host's apt offers). No lab-specific files: those are added by the image recipes.
# In: SUITE, MIRROR, SECURITY_MIRROR, VARIANT, PACKAGES_FILE, DEB_SRC (yes|no),
#     APT_LISTS (keep: a testbed runs `apt-get source` and installs test
#     dependencies without an `apt-get update` of its own, as autopkgtest's
#     images allow; drop: dom0 needs none)
# Out: $OUT/root
set -euo pipefail
root="$OUT/root"
debootstrap --variant="$VARIANT" "$SUITE" "$root" "$MIRROR"
types="deb"; [ "$DEB_SRC" = yes ] && types="deb deb-src"
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<SRC
Types: $types
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: $types
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
pkgs=$(sed -e 's/#.*//' "$PACKAGES_FILE" | xargs)
# keep the chroot's daemons from starting while packages install
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod 755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
chroot "$root" apt-get -q update
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get -q -y dist-upgrade
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get -q -y --no-install-recommends install $pkgs
chroot "$root" apt-get clean
umount "$root/proc"; trap - EXIT
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "$root"/var/cache/apt/*.bin
[ "$APT_LISTS" = keep ] || rm -rf "$root"/var/lib/apt/lists/*
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' > "$OUT/manifest"
