#!/usr/bin/python3
"""The Xen lab harness: a real Xen host under QEMU TCG emulation.

What it is for: build (once, cached by input) the pieces of an emulated Xen
host -- the hypervisor, Debian's dom0-capable kernel, dom0's and the
testbeds' root images, initramfs images, an ssh key -- then boot Xen + dom0
with a job directory shared over 9p, stream the console with timestamps,
collect the job's output, `figure` lines and exit code, and power off.

What it is not for: anything the project's daemons do. The jobs run inside
dom0 (see jobs/); this file only makes and runs the machine.

Commands (see --help): build, boot, run.  Environment:
  XENLAB_CACHE   cache dir (default /var/cache/autopkgtest-xen-lab)
  XENLAB_TMPDIR  where per-run dirs are made (default: $TMPDIR or /var/tmp)
"""

import argparse
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import fcntl
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CACHE = "/var/cache/autopkgtest-xen-lab"
SUITE = "bookworm"
XEN_PACKAGE = "xen-hypervisor-4.17-amd64"

# Modules each initramfs loads (dependencies are added by the recipe).
DOM0_INITRD_MODULES = "virtio_pci virtio_blk virtio_net ext4 9pnet_virtio 9p"
DOMU_INITRD_MODULES = "xen-blkfront xen-netfront ext4"


def log(msg):
    print(f"[xenlab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


def apt_candidate(package):
    out = sh(["apt-cache", "policy", package])
    m = re.search(r"Candidate:\s*(\S+)", out)
    if not m or m.group(1) == "(none)":
        sys.exit(f"xenlab: apt offers no candidate for {package}; run apt-get update")
    return m.group(1)


def newest_kernel_release():
    """The 6.1.0-NN-amd64 release that linux-image-amd64's candidate depends on."""
    out = sh(["apt-cache", "show", f"linux-image-amd64={apt_candidate('linux-image-amd64')}"])
    m = re.search(r"^Depends:.*?linux-image-(\d[\w.-]*-amd64)", out, re.M)
    if not m:
        sys.exit("xenlab: cannot tell which kernel linux-image-amd64 depends on")
    return m.group(1)


def host_mirrors():
    """(mirror, security mirror) the host's apt uses, so the lab needs no other network."""
    mirror = security = None
    texts = []
    for d in ("/etc/apt/sources.list.d",):
        if os.path.isdir(d):
            texts += [open(os.path.join(d, f)).read() for f in sorted(os.listdir(d))
                      if f.endswith((".sources", ".list"))]
    if os.path.exists("/etc/apt/sources.list"):
        texts.append(open("/etc/apt/sources.list").read())
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.findall(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = " ".join(re.findall(r"^Suites:\s*(.+)$", stanza, re.M))
            for line in re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", stanza, re.M):
                uris, suites = [line[0]], line[1]
            if not uris:
                continue
            if "security" in suites and not security:
                security = uris[0]
            elif SUITE in suites and not mirror:
                mirror = uris[0]
    mirror = os.environ.get("XENLAB_MIRROR", mirror or "http://deb.debian.org/debian")
    security = os.environ.get("XENLAB_SECURITY_MIRROR", security or "http://deb.debian.org/debian-security")
    return mirror, security


def hash_path(h, path):
    """Feed a file's or a directory tree's names and contents into h."""
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            h.update(name.encode() + b"\0")
            hash_path(h, os.path.join(path, name))
    else:
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())


class Artifact:
    """One cached build product: a recipe script run with params, input files and deps."""

    def __init__(self, name, recipe, params=None, files=None, deps=()):
        self.name, self.recipe = name, recipe
        self.params = params or {}
        self.files = files or {}  # env var -> path under HERE (hashed by content)
        self.deps = list(deps)


def lab_artifacts():
    kr = os.environ.get("XENLAB_KERNEL_RELEASE") or newest_kernel_release()
    mirror, security = host_mirrors()
    rootfs = {"SUITE": SUITE, "MIRROR": mirror, "SECURITY_MIRROR": security, "VARIANT": "minbase"}
    arts = [
        Artifact("xen", "xen.sh", {"XEN_PACKAGE": XEN_PACKAGE, "XEN_VERSION": apt_candidate(XEN_PACKAGE)}),
        Artifact("kernel", "kernel.sh", {"KERNEL_RELEASE": kr,
                                         "KERNEL_VERSION": apt_candidate(f"linux-image-{kr}")}),
        Artifact("busybox", "busybox.sh", {"BUSYBOX_VERSION": apt_candidate("busybox-static")}),
        Artifact("sshkey", "sshkey.sh", {"GENERATION": "1"}),
        Artifact("dom0-rootfs", "rootfs.sh", dict(rootfs, DEB_SRC="no", APT_LISTS="drop"),
                 {"PACKAGES_FILE": "packages/dom0.list"}),
        Artifact("domu-rootfs", "rootfs.sh", dict(rootfs, DEB_SRC="yes", APT_LISTS="keep"),
                 {"PACKAGES_FILE": "packages/domu.list"}),
        Artifact("initramfs-dom0", "initramfs.sh", {"MODULES": DOM0_INITRD_MODULES, "KERNEL_RELEASE": kr},
                 {"INIT_SCRIPT": "initramfs/dom0-init"}, ["kernel", "busybox"]),
        Artifact("initramfs-domu", "initramfs.sh", {"MODULES": DOMU_INITRD_MODULES, "KERNEL_RELEASE": kr},
                 {"INIT_SCRIPT": "initramfs/domu-init"}, ["kernel", "busybox"]),
        Artifact("domu-image", "domu-image.sh", {"IMAGE_SIZE": os.environ.get("XENLAB_DOMU_SIZE", "3G")},
                 {}, ["domu-rootfs"]),
        Artifact("dom0-image", "dom0-image.sh", {"IMAGE_SIZE": "4G", "KERNEL_RELEASE": kr},
                 {"LAB_FILES": "dom0"}, ["dom0-rootfs", "kernel", "initramfs-domu", "sshkey"]),
    ]
    return {a.name: a for a in arts}


class Cache:
    """Artifacts under $XENLAB_CACHE/<name>-<key>, key = hash of every input."""

    def __init__(self, root, logdir):
        self.root, self.logdir = root, logdir
        os.makedirs(root, exist_ok=True)
        self.keys, self.paths, self.report = {}, {}, []

    def key(self, arts, name):
        if name not in self.keys:
            a = arts[name]
            h = hashlib.sha256()
            hash_path(h, os.path.join(HERE, "recipes", a.recipe))
            for k in sorted(a.params):
                h.update(f"param {k}={a.params[k]}\n".encode())
            for k in sorted(a.files):
                h.update(f"file {k}={a.files[k]}\n".encode())
                hash_path(h, os.path.join(HERE, a.files[k]))
            for d in a.deps:
                h.update(f"dep {d}={self.key(arts, d)}\n".encode())
            self.keys[name] = h.hexdigest()[:16]
        return self.keys[name]

    def build(self, arts, name, rebuild=()):
        if name in self.paths:
            return self.paths[name]
        a = arts[name]
        deps = {d: self.build(arts, d, rebuild) for d in a.deps}
        key = self.key(arts, name)
        path = os.path.join(self.root, f"{name}-{key}")
        done = os.path.join(path, ".xenlab-done")
        if os.path.exists(done) and name not in rebuild:
            self.report.append((name, "hit", 0.0, key))
        else:
            t0 = time.time()
            log(f"building {name} ({key})")
            tmp = tempfile.mkdtemp(prefix=f".build-{name}-", dir=self.root)
            work = tempfile.mkdtemp(prefix=f".work-{name}-", dir=self.root)
            env = dict(os.environ, OUT=tmp, WORK=work, XENLAB_DIR=HERE, LC_ALL="C.UTF-8")
            env.update(a.params)
            env.update({k: os.path.join(HERE, v) for k, v in a.files.items()})
            env.update({"DEP_" + d.upper().replace("-", "_"): p for d, p in deps.items()})
            logfile = os.path.join(self.logdir, f"build-{name}.log")
            with open(logfile, "w") as lf:
                rc = subprocess.call(["bash", os.path.join(HERE, "recipes", a.recipe)],
                                     env=env, stdout=lf, stderr=subprocess.STDOUT, cwd=work)
            shutil.rmtree(work, ignore_errors=True)
            if rc != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                tail = open(logfile).read()[-3000:]
                sys.exit(f"xenlab: building {name} failed (rc={rc}); log {logfile}:\n{tail}")
            with open(os.path.join(tmp, ".xenlab-done"), "w") as f:
                json.dump({"name": name, "key": key, "params": a.params, "deps": deps,
                           "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=1)
            if os.path.exists(path):
                shutil.rmtree(path)
            os.rename(tmp, path)
            dt = time.time() - t0
            log(f"built {name} in {dt:.1f}s")
            self.report.append((name, "built", dt, key))
        self.paths[name] = path
        return path

    def prune(self, arts):
        """Remove cached versions of lab artifacts whose key is no longer current."""
        current = {f"{n}-{self.key(arts, n)}" for n in arts}
        for entry in os.listdir(self.root):
            name = entry.rsplit("-", 1)[0]
            if name in arts and entry not in current or entry.startswith((".build-", ".work-")):
                log(f"pruning {entry}")
                shutil.rmtree(os.path.join(self.root, entry), ignore_errors=True)


def build_all(args, logdir):
    cache_dir = args.cache
    os.makedirs(cache_dir, exist_ok=True)
    lock = open(os.path.join(cache_dir, ".lock"), "w")
    log(f"cache {cache_dir} (waiting for its lock)")
    fcntl.flock(lock, fcntl.LOCK_EX)
    t0 = time.time()
    arts = lab_artifacts()
    cache = Cache(cache_dir, logdir)
    for name in arts:
        cache.build(arts, name, set(args.rebuild or []))
    if args.prune:
        cache.prune(arts)
    for name, state, dt, key in cache.report:
        print(f"cache {name} {state} {dt:.1f}s {key}", flush=True)
    print(f"figure lab_build_wall {time.time() - t0:.1f} s", flush=True)
    return cache.paths, lock


def boot(paths, job_dir, args, env_vars=None, watch=None):
    """Boot Xen + dom0 with job_dir as /share/job; return (rc, out dir, timings)."""
    rundir = tempfile.mkdtemp(prefix="xenlab-run-", dir=tmp_base())
    watcher = watch(rundir) if watch else None
    share = os.path.join(rundir, "share")
    shutil.copytree(job_dir, os.path.join(share, "job"), symlinks=True)
    os.makedirs(os.path.join(share, "out"))
    for extra in args.put or []:
        dst = os.path.join(share, "job", os.path.basename(extra.rstrip("/")))
        (shutil.copytree if os.path.isdir(extra) else shutil.copy2)(extra, dst)
    with open(os.path.join(share, "job", "env"), "w") as f:
        for k, v in sorted((env_vars or {}).items()):
            f.write(f"{k}='{v}'\n")
    vg = os.path.join(rundir, "vg.img")
    with open(vg, "wb") as f:
        f.truncate(parse_size(args.vg_size))
    init = {"systemd": "/lib/systemd/systemd", "script": "/usr/local/sbin/xenlab-init"}[args.init]
    # net.ifnames=0: the uplink keeps the name eth0 under udev too
    dom0_args = f"console=hvc0 root=/dev/vda init={init} net.ifnames=0 {args.dom0_cmdline}".strip()
    kernel, xen = paths["kernel"], paths["xen"]
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "qemu64,+svm",
           "-smp", str(args.smp), "-m", str(args.mem), "-nographic", "-no-reboot",
           "-kernel", f"{xen}/xen.elf",
           "-append", f"console=com1 dom0_mem={args.dom0_mem},max:{args.dom0_mem} noreboot",
           "-initrd", f"{kernel}/vmlinuz {dom0_args},{paths['initramfs-dom0']}/initrd.cpio.gz",
           "-drive", f"file={paths['dom0-image']}/dom0.img,format=raw,if=virtio,snapshot=on,cache=unsafe",
           "-drive", f"file={vg},format=raw,if=virtio,cache=unsafe",
           "-drive", f"file={paths['domu-image']}/domu.img,format=raw,if=virtio,readonly=on",
           "-virtfs", f"local,path={share},mount_tag=share,security_model=none,id=share",
           "-netdev", "user,id=up0", "-device", "virtio-net-pci,netdev=up0"]
    console_log = os.path.join(rundir, "console.log")
    log(f"run dir {rundir}; booting Xen + dom0 (init={args.init}, smp={args.smp})")
    t0 = time.time()
    # snapshot=on puts dom0's writes in a temporary file under TMPDIR: keep it in the run dir
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(os.environ, TMPDIR=rundir))
    timings = {}
    marks = {"(XEN) Xen version": "xen_start", "switch_root": "dom0_root",
             "[xenlab-job]": "job_start", "job rc=": "job_end"}

    def stop(signum, _frame):
        os.kill(proc.pid, signal.SIGKILL)
        sys.exit(f"xenlab: signal {signum}, killed qemu pid {proc.pid}")

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    timed_out = False
    with open(console_log, "w") as f:
        f.write(f"# qemu pid {proc.pid}\n# {' '.join(cmd)}\n")
        buf = b""
        while True:
            if time.time() - t0 > args.timeout:
                f.write(f"[{time.time() - t0:8.2f}] ### timeout, killing qemu pid {proc.pid}\n")
                os.kill(proc.pid, signal.SIGKILL)
                timed_out = True
                break
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if watcher:
                watcher.poll()
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace").rstrip("\r")
                line = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", line)
                stamp = f"[{time.time() - t0:8.2f}] {line}"
                f.write(stamp + "\n")
                f.flush()
                for pat, name in marks.items():
                    if pat in line and name not in timings:
                        timings[name] = time.time() - t0
                if not args.quiet:
                    print(stamp, flush=True)
    rc_qemu = proc.wait()
    for s, h in old.items():
        signal.signal(s, h)
    wall = time.time() - t0
    out = os.path.join(share, "out")
    rc_file = os.path.join(out, "rc")
    if timed_out:
        rc = 124
    elif os.path.exists(rc_file):
        rc = int(open(rc_file).read().strip() or 1)
    else:
        rc = 125
    log(f"qemu exited rc={rc_qemu} after {wall:.1f}s; job rc={rc}; console log {console_log}")
    timings["qemu_wall"] = wall
    if watch:
        return rc, rundir, timings, watcher
    return rc, rundir, timings


def origin_sum(rundir):
    """sha256 of the origin LV, read from the VG's disk file on the host.
    dom0 wrote the origin's dm table to out/origin.map (linear segments)."""
    map_file = os.path.join(rundir, "share", "out", "origin.map")
    h, total = hashlib.sha256(), 0
    with open(os.path.join(rundir, "vg.img"), "rb") as f:
        for line in open(map_file):
            fields = line.split()
            if len(fields) != 5 or fields[2] != "linear":
                raise ValueError(f"unexpected origin table line {line.strip()!r}")
            f.seek(int(fields[4]) * 512)
            left = int(fields[1]) * 512
            while left:
                chunk = f.read(min(left, 1 << 22))
                if not chunk:
                    raise ValueError("the origin lies beyond the end of the VG disk")
                h.update(chunk)
                left -= len(chunk)
            total += int(fields[1]) * 512
    return h.hexdigest(), total


class OriginWatch:
    """Checksums the origin when dom0 announces it final (out/origin.map), then
    tells dom0 (out/origin.sum-taken); compared with a second sum after power-off."""

    def __init__(self, rundir):
        self.rundir, self.before, self.error, self.thread = rundir, None, None, None

    def poll(self):
        out = os.path.join(self.rundir, "share", "out")
        if self.thread or not os.path.exists(os.path.join(out, "origin.map")):
            return
        def work():
            try:
                t = time.time()
                self.before = origin_sum(self.rundir)
                self.seconds = time.time() - t
            except (OSError, ValueError) as e:
                self.error = str(e)
            open(os.path.join(out, "origin.sum-taken"), "w").close()
        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()

    def verdict(self):
        if not self.thread:
            return False, "dom0 never announced the origin (no origin.map)"
        self.thread.join()
        if self.error:
            return False, self.error
        after = origin_sum(self.rundir)
        return self.before == after, (f"sha256 {self.before[0][:16]} after image build, "
                                      f"{after[0][:16]} after the run ({after[1]} bytes)")


def repo_root():
    return os.path.dirname(os.path.dirname(HERE))


def package_deb():
    """The autopkgtest-xen .deb dom0 installs: $XENLAB_DEB (a file), or the
    committed tree built by tests/packaging/build-deb (cached per tree)."""
    deb = os.environ.get("XENLAB_DEB")
    if deb:
        if not os.path.isfile(deb):
            sys.exit(f"xenlab: XENLAB_DEB={deb} is not a file")
        return deb
    log("building the package of the committed tree (tests/packaging/build-deb)")
    out = subprocess.run([os.path.join(repo_root(), "tests", "packaging", "build-deb")],
                         stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        sys.exit("xenlab: tests/packaging/build-deb failed (see above)")
    built = out.stdout.strip().splitlines()[-1]
    debs = sorted(f for f in os.listdir(built) if f.startswith("autopkgtest-xen_") and f.endswith(".deb"))
    if len(debs) != 1:
        sys.exit(f"xenlab: expected one autopkgtest-xen_*.deb in {built}, found {debs}")
    return os.path.join(built, debs[0])


SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# Always copied in: the fixture whose test outlives any patience, for the
# runner-killed-mid-test check.
KILL_FIXTURE = "timeout"


def lab_packages(specs):
    """[(name, host directory or None)] from the command line: an existing
    directory is a source tree copied in, anything else an archive name."""
    out = []
    for spec in specs:
        if os.path.isdir(spec):
            name = os.path.basename(os.path.abspath(spec))
            if not os.path.isfile(os.path.join(spec, "debian", "control")):
                sys.exit(f"xenlab: {spec} has no debian/control: not a source tree")
            out.append((name, os.path.abspath(spec)))
        elif SOURCE_NAME.match(spec):
            out.append((spec, None))
        else:
            sys.exit(f"xenlab: {spec!r} is neither a directory nor a source package name")
    names = [n for n, _ in out]
    if len(set(names)) != len(names) or KILL_FIXTURE in names:
        sys.exit(f"xenlab: package names must be distinct and not {KILL_FIXTURE!r} (the lab's own): {names}")
    return out


CHECK_LINE = re.compile(r"check (\S+) (ok|FAIL)(?:\s+#.*)?\s*")


# autopkgtest's exit codes, from best to worst (a lab failure is 20).
def worst_code(codes):
    return max(codes) if codes else 0


def run_lab(args, paths):
    """The whole lab: image, resume proof, adt-privd; figures and checks out."""
    t0 = time.time()
    job = tempfile.mkdtemp(prefix="xenlab-job-", dir=tmp_base())
    packages = lab_packages(args.packages)
    try:
        jobdir = os.path.join(job, "job")
        shutil.copytree(os.path.join(HERE, "jobs"), jobdir)
        # dom0 installs the package first: adt-xen-image builds the image.
        deb = package_deb()
        shutil.copy2(deb, jobdir)
        log(f"dom0 installs {deb}")
        pkgdir = os.path.join(jobdir, "packages")
        os.makedirs(pkgdir)
        for name, tree in packages + [(KILL_FIXTURE, os.path.join(repo_root(), "tests", "fixtures", KILL_FIXTURE))]:
            if tree:
                shutil.copytree(tree, os.path.join(pkgdir, name), symlinks=True)
        env = {"SLOTS": str(args.slots), "IMAGE": args.image, "PRIVD": "no" if args.no_privd else "yes",
               "PACKAGES": " ".join(n for n, _ in packages),
               "REFERENCE": "no" if args.no_reference else "yes"}
        rc, rundir, timings, watcher = boot(paths, jobdir, args, env_vars=env, watch=OriginWatch)
    finally:
        shutil.rmtree(job, ignore_errors=True)
    out = os.path.join(rundir, "share", "out")
    job_log = os.path.join(out, "job.log")
    lines = open(job_log, errors="replace").read().splitlines() if os.path.exists(job_log) else []
    print("== figures and checks from dom0")
    for line in lines:
        if line.startswith(("figure ", "check ", "target ")):
            print(line)
    # A check line is `check NAME ok|FAIL`, maybe followed by `# why`; any
    # other line starting with `check ` is a broken check: the lab fails.
    malformed = [line for line in lines if line.startswith("check ") and not CHECK_LINE.fullmatch(line)]
    for line in malformed:
        print(f"check dom0_check_line_well_formed FAIL  # not `check NAME ok|FAIL`: {line!r}")
    print("== packages (adt-runner in dom0, then Debian's autopkgtest on the same testbeds)")
    for line in lines:
        if line.startswith(("package ", "summary ", "reference ", "reference-summary ")):
            print(line)
    results = os.path.join(out, "results")
    codes = []
    for name, _ in packages:
        code_file = os.path.join(results, f"{name}.exitcode")
        codes.append(int(open(code_file).read().strip()) if os.path.exists(code_file) else 20)
    if not args.results:
        args.results = os.path.join(tmp_base(), time.strftime("xenlab-results-%Y%m%d-%H%M%S"))
    if os.path.isdir(results):
        shutil.copytree(results, args.results, dirs_exist_ok=True)
        print(f"results in {args.results}")
    t = time.time()
    same, detail = watcher.verdict()
    print(f"check origin_unchanged_by_the_run {'ok' if same else 'FAIL'}  # {detail}")
    print(f"figure host_origin_checksum {time.time() - t:.1f} s")
    if not same:
        rc = rc or 1
    if malformed or any(m and m.group(2) == "FAIL" for m in map(CHECK_LINE.fullmatch, lines)):
        rc = rc or 1
    for k, v in timings.items():
        print(f"figure lab_{k} {v:.1f} s")
    print(f"figure lab_boot_and_job_wall {time.time() - t0:.1f} s")
    # The worst package's autopkgtest code; a failed lab check or job is 20.
    worst = worst_code(codes)
    if rc != 0:
        print(f"the lab failed (job rc={rc} or a check failed): exit 20; worst package code {worst}")
        return 20, rundir
    return worst, rundir


def tmp_base():
    return os.environ.get("XENLAB_TMPDIR") or os.environ.get("TMPDIR") or "/var/tmp"


def parse_size(text):
    m = re.fullmatch(r"(\d+)([KMG]?)", text)
    if not m:
        sys.exit(f"xenlab: bad size {text!r} (want e.g. 8G)")
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


def add_boot_args(p):
    p.add_argument("--init", choices=["systemd", "script"], default=os.environ.get("XENLAB_INIT", "systemd"),
                   help="dom0's PID 1: systemd, or the lab's script init (default: %(default)s)")
    p.add_argument("--smp", type=int, default=int(os.environ.get("XENLAB_SMP", "1")),
                   help="virtual CPUs; 1 copes best with a busy host (default: %(default)s)")
    p.add_argument("--mem", type=int, default=int(os.environ.get("XENLAB_MEM", "3072")), help="MiB for the machine")
    p.add_argument("--dom0-mem", default=os.environ.get("XENLAB_DOM0_MEM", "1024M"))
    p.add_argument("--dom0-cmdline", default=os.environ.get("XENLAB_DOM0_CMDLINE", "quiet"))
    p.add_argument("--vg-size", default=os.environ.get("XENLAB_VG_SIZE", "8G"), help="second disk (the VG)")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("XENLAB_TIMEOUT", "3600")),
                   help="seconds the machine may run before it is killed (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="console to the log only")
    p.add_argument("--keep", action="store_true", help="keep the run dir")
    p.add_argument("--put", action="append", help="a file or dir to copy next to the job")


# program -> Debian package that provides it, for the host running the harness
HOST_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "debootstrap": "debootstrap", "depmod": "kmod",
              "modprobe": "kmod", "mkfs.ext4": "e2fsprogs", "cpio": "cpio", "ssh-keygen": "openssh-client",
              "apt-get": "apt", "dpkg-deb": "dpkg"}


def check_host_tools():
    missing = sorted({pkg for prog, pkg in HOST_TOOLS.items() if not shutil.which(prog)})
    if missing:
        sys.exit(f"xenlab: missing host programs; install them with: apt-get install {' '.join(missing)}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", default=os.environ.get("XENLAB_CACHE", DEFAULT_CACHE))
    p.add_argument("--rebuild", action="append", help="rebuild this artifact even if cached")
    p.add_argument("--prune", action="store_true", help="delete stale cached artifacts")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build or reuse every artifact; print what was cached")
    b = sub.add_parser("boot", help="boot the lab and run JOBDIR/run in dom0")
    b.add_argument("job", help="a directory with an executable 'run'")
    add_boot_args(b)
    r = sub.add_parser("run", help="the whole lab: image, resume proof, adt-privd; figures")
    r.add_argument("packages", nargs="*",
                   help="source package names (apt-get source in the testbed) or source trees on the host")
    r.add_argument("--results", default=os.environ.get("XENLAB_RESULTS"),
                   help="copy the packages' output directories here")
    r.add_argument("--no-reference", action="store_true",
                   help="do not run Debian's autopkgtest on the packages for comparison")
    r.add_argument("--image", default=os.environ.get("XENLAB_IMAGE", "bookworm"))
    r.add_argument("--slots", type=int, default=int(os.environ.get("XENLAB_SLOTS", "2")))
    r.add_argument("--no-privd", action="store_true",
                   help="image and resume proof only: neither adt-privd nor adt-runner is driven")
    add_boot_args(r)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("xenlab: must run as root (debootstrap, chroot, mkfs -d of root-owned trees)")
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    check_host_tools()
    t0 = time.time()
    logdir = tempfile.mkdtemp(prefix="xenlab-build-", dir=tmp_base())
    paths, _lock = build_all(args, logdir)
    shutil.rmtree(logdir, ignore_errors=True)
    if args.cmd == "build":
        return 0
    if args.cmd == "run":
        rc, rundir = run_lab(args, paths)
        print(f"figure lab_wall {time.time() - t0:.1f} s")
    else:
        rc, rundir, timings = boot(paths, args.job, args, env_vars={})
        for k, v in timings.items():
            print(f"figure lab_{k} {v:.1f} s")
    if not args.keep and rc == 0:
        shutil.rmtree(rundir, ignore_errors=True)
    else:
        log(f"kept run dir {rundir}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
