# lib.sh: functions shared by the sshd testbed scripts (start, revert, stop).
#
# A testbed lives in a directory DIR chosen by the caller:
#   DIR/env            HOST, PORT, USER, KEY, KNOWN_HOSTS, PID, ROOT, LAYER
#                      (KEY=VALUE lines, sourceable)
#   DIR/id_ed25519     the login key pair, authorised for root in the testbed
#   DIR/layer/upper, work  the overlay's writable layer over the cached root:
#                      on a tmpfs of the testbed's own (LAYER=tmpfs, the
#                      default: a revert is an unmount, and dpkg's fsyncs
#                      cost nothing) or in DIR itself (LAYER=disk, for
#                      builds larger than memory; ADT_TESTBED_LAYER=disk)
#   DIR/root           the overlay's mount point (visible only in the testbed's
#                      mount namespace)
# The testbed runs in its own mount, PID and UTS namespaces. PID is the
# namespace's init (a reaper); killing it kills every process of the testbed
# and drops every mount, so nothing can leak past stop.
# shellcheck shell=sh

testbed_die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

testbed_check_root() {
    [ "$(id -u)" = 0 ] || testbed_die "must run as root (mount and PID namespaces, overlayfs, chroot)"
}

# testbed_load DIR: read DIR/env into TB_* variables, or fail naming DIR.
testbed_load() {
    [ -f "$1/env" ] || testbed_die "$1/env not found: no testbed was started in $1"
    TB_HOST= TB_PORT= TB_USER= TB_KEY= TB_PID= TB_ROOT= TB_KNOWN_HOSTS= TB_LAYER=
    while IFS='=' read -r k v; do
        case "$k" in
            HOST) TB_HOST=$v ;; PORT) TB_PORT=$v ;; USER) TB_USER=$v ;;
            KEY) TB_KEY=$v ;; PID) TB_PID=$v ;; ROOT) TB_ROOT=$v ;;
            KNOWN_HOSTS) TB_KNOWN_HOSTS=$v ;; LAYER) TB_LAYER=$v ;;
        esac
    done <"$1/env"
    [ -n "$TB_PID" ] && [ -n "$TB_PORT" ] && [ -n "$TB_ROOT" ] && [ -n "$TB_LAYER" ] \
        || testbed_die "$1/env lacks PID, PORT, ROOT or LAYER"
}

# testbed_ns_alive PID: is PID still the init of a testbed namespace?
testbed_ns_alive() {
    [ -e "/proc/$1/ns/pid" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = adt-testbed ]
}

# testbed_down DIR LAYER: kill every process of the testbed but its init,
# unmount its filesystems and drop the writable layer. Runs inside the
# testbed's namespaces (nsenter --mount --pid), where kill -1 reaches exactly
# the testbed's processes and DIR/root/proc lists them.
testbed_down() {
    dir=$1 layer=$2
    r=$dir/root
    if mountpoint -q "$r/proc"; then
        i=0
        while :; do
            kill -KILL -1 2>/dev/null || true
            left=
            for p in "$r"/proc/[0-9]*; do
                p=${p##*/}
                [ "$p" = 1 ] || [ "$p" = $$ ] || left="$left $p"
            done
            [ -n "$left" ] || break
            i=$((i + 1))
            [ "$i" -lt 200 ] || testbed_die "processes$left of the testbed in $dir survive SIGKILL"
            sleep 0.05
        done
    fi
    ! mountpoint -q "$r" || umount -R "$r"
    if [ "$layer" = tmpfs ]; then
        ! mountpoint -q "$dir/layer" || umount "$dir/layer"
    else
        rm -rf "$dir/layer/upper" "$dir/layer/work"
    fi
}

# testbed_up DIR ROOT PORT LAYER: (re)create the overlay, mount the API
# filesystems and start sshd; runs inside the testbed's namespaces.
testbed_up() {
    dir=$1 root=$2 port=$3 layer=$4
    r=$dir/root
    mkdir -p "$dir/layer" "$r"
    if [ "$layer" = tmpfs ]; then
        mount -t tmpfs -o "mode=0755,size=${ADT_TESTBED_TMPFS_SIZE:-50%}" adt-testbed-layer "$dir/layer"
    fi
    mkdir -p "$dir/layer/upper" "$dir/layer/work"
    mount -t overlay adt-testbed -o "lowerdir=$root,upperdir=$dir/layer/upper,workdir=$dir/layer/work" "$r"
    mount -t proc proc "$r/proc"
    mount -t sysfs -o ro sysfs "$r/sys"
    # A /dev of its own with the usual nodes, not a bind of the host's: a
    # test that breaks the testbed must not be able to remove host devices.
    mount -t tmpfs -o mode=0755,nosuid tmpfs "$r/dev"
    for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
        IFS=: read -r name major minor <<NODE
$node
NODE
        mknod -m 0666 "$r/dev/$name" c "$major" "$minor"
    done
    ln -s /proc/self/fd "$r/dev/fd"
    ln -s /proc/self/fd/0 "$r/dev/stdin"
    ln -s /proc/self/fd/1 "$r/dev/stdout"
    ln -s /proc/self/fd/2 "$r/dev/stderr"
    ln -s pts/ptmx "$r/dev/ptmx"
    mkdir -m 0755 "$r/dev/pts"
    mkdir -m 1777 "$r/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$r/dev/pts"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/dev/shm"
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$r/run"
    mkdir -p "$r/run/sshd" "$r/run/lock"

    cp /etc/resolv.conf "$r/etc/resolv.conf"
    # A host name of its own (own UTS namespace) that resolves, as on a real
    # machine: sudo, for one, complains on stderr when it does not.
    hostname adt-testbed
    echo adt-testbed >"$r/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tadt-testbed\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
    install -d -m 0700 "$r/root/.ssh"
    install -m 0600 "$dir/id_ed25519.pub" "$r/root/.ssh/authorized_keys"

    chroot "$r" /usr/sbin/sshd -E /run/sshd.log \
        -o "ListenAddress=127.0.0.1:$port" -o PidFile=/run/sshd.pid
}

# testbed_wait_ssh DIR PORT NSPID: wait until root can log in (at most 20 s).
testbed_wait_ssh() {
    i=0
    while ! ssh -q -o BatchMode=yes -o StrictHostKeyChecking=yes \
            -o "UserKnownHostsFile=$1/known_hosts" -o ConnectTimeout=5 \
            -i "$1/id_ed25519" -p "$2" -l root 127.0.0.1 true </dev/null 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -ge 200 ]; then
            echo "${0##*/}: sshd on 127.0.0.1:$2 does not accept the testbed key; its log:" >&2
            cat "/proc/$3/root$1/root/run/sshd.log" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
}

# testbed_free_port: a loopback TCP port nobody listens on now.
testbed_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
