#!/bin/bash
# Artifact "sshkey": the key pair dom0 (the runner's side) uses to reach testbeds.
# Out: $OUT/id_ed25519, $OUT/id_ed25519.pub
set -euo pipefail
ssh-keygen -q -t ed25519 -N "" -C autopkgtest-xen-lab -f "$OUT/id_ed25519"
