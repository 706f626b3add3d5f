# Shell helpers of the lab's jobs in dom0 (sourced): timing, checks, what
# adt-* the real tools still show, running as a user.
now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.2f", e - s }'; }
failed=${failed:-0}
check() {  # NAME COMMAND...: prints `check NAME ok|FAIL`
  local n=$1; shift
  if "$@"; then echo "check $n ok"; else echo "check $n FAIL"; failed=1; fi
}
adt_left() { xl list | awk 'NR > 1 && $1 ~ /^adt-/'; dmsetup ls --target snapshot | awk '$1 ~ /^adt-/'; }
nothing_left() { [ -z "$(adt_left)" ]; }
wait_nothing_left() {  # LIMIT: prints the seconds it took, or fails after LIMIT
  # Polls the snapshots (a dm ioctl, cheap) and only then the domains: under
  # emulation an `xl list` costs a good part of a second of dom0's one CPU,
  # which a tight `xl list` loop would take from the teardown it measures.
  # A snapshot outlives its domain (blkback holds it until the domain goes).
  local t; t=$(now)
  while [ -n "$(dmsetup ls --target snapshot | awk '$1 ~ /^adt-/')" ] || ! nothing_left; do
    [ "$(awk -v s="$t" -v e="$(now)" -v m="$1" 'BEGIN { print (e - s > m) }')" = 0 ] || return 1
    sleep 0.2
  done
  since "$t"
}
as_user() { local u=$1; shift; runuser -u "$u" -- env HOME="/home/$u" "$@"; }
