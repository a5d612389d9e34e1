# What runs on a private network do in the tests (tests/networks.rs), one
# mode per run (no braces: packrun would read them as placeholders):
#   serve PORT N      accept N connections one after the other; for each
#                     print the peer, the bytes it sent and the goodput
#                     from its first byte to its last, in Mbit/s
#   send HOSTS PORT B connect to the one of HOSTS (comma-separated) that is
#                     not this run's own address (retrying while the server
#                     is not up yet), send B bytes, close
#   probe HOSTS PORT  one connection attempt to each of HOSTS: print
#                     `reached` or why not
# Each mode first prints the network devices the run sees.
import socket, sys, time, os


def mine(host):
    # The source address a datagram to `host` would get: `host` itself
    # when it is this run's own address. No packet is sent.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.connect((host, 9))
        return u.getsockname()[0] == host
    except OSError:
        return False
    finally:
        u.close()


def devices():
    return " ".join(sorted(os.listdir("/sys/class/net")))


mode = sys.argv[1]
if mode == "serve":
    port, n = int(sys.argv[2]), int(sys.argv[3])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(8)
    print("devices " + devices(), flush=True)
    for _ in range(n):
        c, peer = s.accept()
        got, first, last = 0, None, None
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            now = time.monotonic()
            first = first or now
            last = now
            got += len(b)
        c.close()
        secs = (last - first) if got and last > first else 0.0
        rate = got * 8 / secs / 1e6 if secs else 0.0
        print("peer %s bytes %d mbit %.1f" % (peer[0], got, rate), flush=True)
elif mode == "send":
    hosts, port, n = sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
    print("devices " + devices(), flush=True)
    host = [h for h in hosts if not mine(h)][0]
    deadline = time.monotonic() + 20
    while True:
        try:
            c = socket.create_connection((host, port), timeout=1)
            break
        except OSError:
            # Not listening yet, or its link not made yet.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    chunk = b"x" * (1 << 16)
    left = n
    while left:
        left -= c.send(chunk[: min(left, len(chunk))])
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    c.close()
    print("sent %d" % n, flush=True)
elif mode == "probe":
    hosts, port = sys.argv[2].split(","), int(sys.argv[3])
    print("devices " + devices(), flush=True)
    for host in hosts:
        try:
            socket.create_connection((host, port), timeout=2).close()
            print(host + " reached", flush=True)
        except OSError as e:
            print(host + " not reached: %s" % e, flush=True)
