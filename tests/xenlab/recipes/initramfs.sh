#!/bin/bash
# Artifact "initramfs-<x>": static busybox + the listed modules (with their
# dependencies, in load order) + an /init script.
# In: INIT_SCRIPT, MODULES, KERNEL_RELEASE, DEP_KERNEL, DEP_BUSYBOX
# Out: $OUT/initrd.cpio, $OUT/initrd.cpio.gz, $OUT/modules.list
set -euo pipefail
d="$WORK/tree"
mkdir -p "$d"/{bin,proc,sys,dev,newroot,mods,tmp,run,etc}
install -m755 "$DEP_BUSYBOX/busybox" "$d/bin/busybox"
for applet in $("$d/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$d/bin/$applet"
done
: > "$d/modules.list"
for m in $MODULES; do
  modprobe -d "$DEP_KERNEL/modules" -S "$KERNEL_RELEASE" --show-depends "$m" |
    awk '$1 == "insmod" { print $2 }' | while read -r f; do
      b=$(basename "$f")
      grep -qx "$b" "$d/modules.list" && continue
      cp "$f" "$d/mods/$b"
      echo "$b" >> "$d/modules.list"
    done
done
install -m755 "$INIT_SCRIPT" "$d/init"
cp "$d/modules.list" "$OUT/modules.list"
(cd "$d" && find . | cpio -o -H newc --quiet) > "$OUT/initrd.cpio"
gzip -1 -c "$OUT/initrd.cpio" > "$OUT/initrd.cpio.gz"
