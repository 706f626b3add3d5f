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
# Whether sysfs shows an adt-* device-mapper device that LVM did not make
# (adt-privd's snapshots have no dm uuid; the volume group's own LVs, also
# named adt-*, have LVM-...). Shell builtins only: no process is started.
adt_snapshot_in_sysfs() {
  local f n u
  for f in /sys/block/dm-*/dm/name; do
    read -r n 2>/dev/null < "$f" || continue
    [[ $n == adt-* ]] || continue
    u=; read -r u 2>/dev/null < "${f%/name}/uuid" || true
    [[ $u == LVM-* ]] || return 0
  done
  return 1
}
wait_nothing_left() {  # LIMIT: prints the seconds it took, or fails after LIMIT
  # Under emulation dom0 has one slow CPU, and every process a polling loop
  # starts takes time from the teardown it measures (a loop of dmsetup, awk,
  # date and sleep took about half of it). So the loop starts none: it
  # reads sysfs, the clock ($EPOCHREALTIME) and waits (read -t on a pipe
  # nobody writes) with shell builtins. When no adt-* snapshot is left
  # there, `nothing_left` confirms with xl and dmsetup themselves. The time
  # is when the last adt-* snapshot was seen gone: a snapshot outlives its
  # domain (blkback holds it open until the domain goes, and adt-privd
  # destroys the domain first), so both were gone then; the confirming
  # commands' own cost under emulation is not counted.
  local t0 gone d fd
  t0=${EPOCHREALTIME/[.,]/}
  exec {fd}<> <(:)
  while :; do
    if ! adt_snapshot_in_sysfs; then
      gone=${EPOCHREALTIME/[.,]/}
      nothing_left && break
    fi
    if (( ${EPOCHREALTIME/[.,]/} - t0 > $1 * 1000000 )); then
      exec {fd}>&-
      echo "gave up after $1 s waiting for every adt-* domain and snapshot to go" >&2
      return 1
    fi
    read -r -t 0.1 -u "$fd" _ || true
  done
  exec {fd}>&-
  d=$((gone - t0))
  printf '%d.%02d' $((d / 1000000)) $((d % 1000000 / 10000))
}
as_user() { local u=$1; shift; runuser -u "$u" -- env HOME="/home/$u" "$@"; }
# Where a teardown's time went, from adt-privd's journal (the lab runs it
# with ADT_PRIVD_LOG=adt_privd=debug): the kill to privd's "owner
# disconnected", each xl/dmsetup command it ran, and the teardown itself.
# Figures only; nothing is checked. Without journald (no systemd) it says so.
teardown_breakdown() {  # PREFIX KILL_EPOCH: prints `figure PREFIX_... s` lines
  if [ "$(cat /proc/1/comm)" != systemd ]; then
    echo "no journal (no systemd): no breakdown of $1"; return 0
  fi
  journalctl --no-pager -u adt-privd --since "@${2%.*}" -o json |
    /usr/bin/python3 -c '
import json, sys
prefix, kill = sys.argv[1], float(sys.argv[2])
for line in sys.stdin:
    e = json.loads(line)
    at = int(e["__REALTIME_TIMESTAMP"]) / 1e6
    if at < kill:
        continue
    msg, cmd = e.get("MESSAGE", ""), e.get("F_COMMAND", "")
    secs = float(e.get("F_SECONDS", "nan"))
    if msg.startswith("owner disconnected"):
        print(f"figure {prefix}_kill_to_privd_teardown_start {at - kill:.2f} s")
    elif msg == "ran" and cmd:
        tool = "_".join(w.rsplit("/", 1)[-1] for w in cmd.split()[:2])
        print(f"figure {prefix}_{tool} {secs:.2f} s")
    elif msg == "torn down":
        print(f"figure {prefix}_privd_teardown {secs:.2f} s")
        print(f"figure {prefix}_kill_to_privd_torn_down {at - kill:.2f} s")
' "$1" "$2"
}
