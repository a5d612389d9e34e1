"""Takes a kernel counter (`counters.py WHAT hog`: all it can get, then
holds it, printing `held N`: the calls that succeeded) or uses a little
of it (`WHAT run|host|nocaps`: prints `ok`; `nocaps` first drops every
capability, as a uid-0 service without them). WHAT: aio, inotify,
watches, fanotify, sigpending, mqueue, memlock, pty."""
import ctypes, os, sys, signal, time
libc = ctypes.CDLL(None, use_errno=True)
E = lambda: ctypes.get_errno()
what, role = sys.argv[1], sys.argv[2]

def fail(step):
    e = E()
    print(f"{what} {step}: {os.strerror(e)}", flush=True)
    sys.exit(1)

if role == "nocaps":
    hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
    if libc.capset(hdr, (ctypes.c_uint32 * 6)()) != 0:
        fail("capset")

def io_setup(n):
    ctx = ctypes.c_ulong(0)
    return libc.syscall(206, ctypes.c_uint(n), ctypes.byref(ctx)) == 0

def inotify():
    return libc.inotify_init1(os.O_CLOEXEC)

def fanotify():
    # FAN_CLASS_NOTIF | FAN_REPORT_FID: what an unprivileged process may make
    return libc.fanotify_init(0x200, os.O_RDONLY)

def sigqueue(sig):
    return libc.sigqueue(os.getpid(), sig, ctypes.c_void_p(0)) == 0

class MqAttr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long),
                ("msgsize", ctypes.c_long), ("curmsgs", ctypes.c_long),
                ("pad", ctypes.c_long * 4)]

def mq(name, maxmsg, msgsize):
    a = MqAttr(0, maxmsg, msgsize, 0)
    return libc.mq_open(name.encode(), os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(a))

def shm_lock(size):
    sid = libc.shmget(0, ctypes.c_size_t(size), 0o1000 | 0o600)
    if sid < 0:
        fail("shmget")
    if libc.shmctl(sid, 11, None) != 0:  # SHM_LOCK
        e = E()
        libc.shmctl(sid, 0, None)  # IPC_RMID
        ctypes.set_errno(e)
        return None
    return sid

def ptmx():
    try:
        return os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        ctypes.set_errno(e.errno)
        return -1

def hold(n):
    print(f"held {n}", flush=True)
    while True:
        time.sleep(3600)

if role == "hog":
    n = 0
    if what == "aio":
        # One context, as large as one call may make.
        size = 65536
        while size >= 1 and not io_setup(size):
            size //= 2
        n = size
    elif what == "inotify":
        while inotify() >= 0:
            n += 1
    elif what == "watches":
        fd = inotify()
        full = False
        for top in ["/usr", "/etc", "/var", "/opt", "/sys"]:
            for d, dirs, files in os.walk(top):
                for f in [d] + [os.path.join(d, f) for f in files]:
                    if libc.inotify_add_watch(fd, f.encode(), 0x4) >= 0:
                        n += 1
                    elif E() == 28:
                        full = True
                        break
                if full:
                    break
            if full:
                break
        i = 0
        while not full:
            p = f"/tmp/w{i}"
            i += 1
            open(p, "w").close()
            if libc.inotify_add_watch(fd, p.encode(), 0x4) >= 0:
                n += 1
            elif E() == 28:
                full = True
            else:
                fail("inotify_add_watch")
    elif what == "fanotify":
        while fanotify() >= 0:
            n += 1
    elif what == "sigpending":
        sig = signal.SIGRTMIN
        signal.pthread_sigmask(signal.SIG_BLOCK, [sig])
        while sigqueue(sig):
            n += 1
    elif what == "mqueue":
        # Big queues first, then ever smaller ones down to one byte.
        for maxmsg in (10, 1):
            size = 8192
            while size >= 1:
                if mq(f"/hog{n}", maxmsg, size) >= 0:
                    n += 1
                else:
                    size //= 2
    elif what == "memlock":
        size = 8 << 20
        while size >= 4096:
            if shm_lock(size) is not None:
                n += size
            else:
                size //= 2
    elif what == "pty":
        while True:
            if ptmx() >= 0:
                n += 1
            elif E() == 24 and os.fork() == 0:  # EMFILE: go on in a child
                os.closerange(3, 1 << 20)
            elif E() == 24:
                while True:
                    time.sleep(3600)
            else:
                break
    hold(n)

# a little of it, then let it go
ok = False
if what == "aio":
    ok = io_setup(128)
elif what in ("inotify", "watches"):
    fd = inotify()
    ok = fd >= 0 and (what == "inotify" or libc.inotify_add_watch(fd, b"/", 0x4) >= 0)
elif what == "fanotify":
    ok = fanotify() >= 0
elif what == "sigpending":
    sig = signal.SIGRTMIN
    signal.pthread_sigmask(signal.SIG_BLOCK, [sig])
    ok = sigqueue(sig)
elif what == "mqueue":
    name = f"/packrun-probe-{os.getpid()}"
    fd = mq(name, 1, 64)
    ok = fd >= 0
    if ok:
        libc.mq_unlink(name.encode())
elif what == "memlock":
    sid = shm_lock(4096)
    ok = sid is not None
    if ok:
        libc.shmctl(sid, 12, None)
        libc.shmctl(sid, 0, None)
elif what == "pty":
    ok = ptmx() >= 0
if not ok:
    fail("a little")
print("ok", flush=True)
