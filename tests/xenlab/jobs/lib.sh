# Shell helpers of the lab's jobs in dom0 (sourced): timing, checks, what
# adt-* the real tools still show, running as a user.
now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.2f", e - s }'; }
failed=${failed:-0}
check() {  # NAME COMMAND...: prints `check NAME ok|FAIL`
  local n=$1; shift
  if "$@"; then echo "check $n ok"; else echo "check $n FAIL"; failed=1; fi
}
adt_domains() { xl list | awk 'NR > 1 && $1 ~ /^adt-/'; }
adt_snapshots() { dmsetup ls --target snapshot | awk '$1 ~ /^adt-/'; }
adt_left() { adt_domains; adt_snapshots; }
# Fails too when xl or dmsetup cannot answer: "nothing listed" from a tool
# that failed proves nothing.
nothing_left() { local d s; d=$(adt_domains) && s=$(adt_snapshots) && [ -z "$d$s" ]; }
# Before a teardown is measured: a domain and a snapshot exist to tear down,
# or the check after the kill would pass on nothing.
testbed_up() {  # WHAT: prints what is up; fails saying WHAT had nothing up
  local d s
  d=$(adt_domains); s=$(adt_snapshots)
  printf '%s\n' "$d" "$s" | sed '/^$/d'
  [ -n "$d" ] && [ -n "$s" ] && return 0
  echo "no adt-* domain and snapshot up before $1 (domains: '${d}'; snapshots: '${s}')"
  return 1
}
wait_for() {  # LIMIT WHAT COMMAND...: polls COMMAND until it succeeds; fails after LIMIT s saying what it waited for
  local limit=$1 what=$2 t; shift 2
  t=$(now)
  until "$@"; do
    if [ "$(awk -v s="$t" -v e="$(now)" -v m="$limit" 'BEGIN { print (e - s > m) }')" = 1 ]; then
      echo "gave up after $limit s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}
wait_nothing_left() {  # LIMIT: prints the seconds it took, or fails after LIMIT
  # Polls the snapshots (a dm ioctl, cheap) and only then the domains: under
  # emulation an `xl list` costs a good part of a second of dom0's one CPU,
  # which a tight `xl list` loop would take from the teardown it measures.
  # A snapshot outlives its domain (blkback holds it until the domain goes).
  local t; t=$(now)
  while [ -n "$(dmsetup ls --target snapshot | awk '$1 ~ /^adt-/')" ] || ! nothing_left; do
    if [ "$(awk -v s="$t" -v e="$(now)" -v m="$1" 'BEGIN { print (e - s > m) }')" = 1 ]; then
      echo "gave up after $1 s waiting for every adt-* domain and snapshot to go" >&2
      return 1
    fi
    sleep 0.2
  done
  since "$t"
}
as_user() { local u=$1; shift; runuser -u "$u" -- env HOME="/home/$u" "$@"; }
