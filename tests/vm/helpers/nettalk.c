/* What runs on a private network do in the VM suite (static: the guest is
 * busybox alone); the C twin of tests/helpers/nettalk.py, plus datagrams.
 * One mode per run; each first prints "devices ..." (the run's
 * /sys/class/net, sorted):
 *   serve PORT N        accept N TCP connections one after the other; for
 *                       each print "peer ADDR bytes B mbit M" (goodput
 *                       from its first byte to its last)
 *   send HOSTS PORT B   connect to the one of HOSTS (comma-separated) that
 *                       is not this run's own address (retrying while the
 *                       server is not up yet), send B bytes, close
 *   probe HOSTS PORT    one TCP connection attempt to each of HOSTS: print
 *                       "ADDR reached" or "ADDR not reached: why"
 *   echo PORT           answer UDP datagrams until 5 s pass without one
 *                       (60 s before the first)
 *   ping HOSTS PORT N   UDP round trips to the echo on the one of HOSTS
 *                       that is not this run's own: once one came back,
 *                       N more, each waiting up to 300 ms; print
 *                       "ping answered K of N min_us X median_us Y" */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void devices(void) {
    char *names[64];
    int n = 0;
    DIR *d = opendir("/sys/class/net");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    if (d)
        closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    printf("devices");
    for (int i = 0; i < n; i++)
        printf(" %s", names[i]);
    printf("\n");
    fflush(stdout);
}

static struct sockaddr_in addr_of(const char *host, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", host);
        exit(2);
    }
    return a;
}

/* Whether `host` is this run's own address: the source a datagram to it
 * would get. No packet is sent. */
static int mine(const char *host) {
    struct sockaddr_in a = addr_of(host, 9), me;
    socklen_t len = sizeof me;
    int s = socket(AF_INET, SOCK_DGRAM, 0), is = 0;
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&me, &len) == 0)
        is = me.sin_addr.s_addr == a.sin_addr.s_addr;
    close(s);
    return is;
}

/* The first of the comma-separated HOSTS that is not this run's own. */
static char *other(char *hosts) {
    for (char *h = strtok(hosts, ","); h; h = strtok(NULL, ","))
        if (!mine(h))
            return h;
    fprintf(stderr, "no other host in the list\n");
    exit(2);
}

static int serve(int port, int n) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 8)) {
        perror("bind/listen");
        return 1;
    }
    devices();
    static char buf[1 << 16];
    for (int i = 0; i < n; i++) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int c = accept(s, (struct sockaddr *)&peer, &len);
        if (c < 0) {
            perror("accept");
            return 1;
        }
        long long got = 0;
        double first = 0, last = 0;
        ssize_t r;
        while ((r = read(c, buf, sizeof buf)) > 0) {
            last = now();
            if (!got)
                first = last;
            got += r;
        }
        close(c);
        double secs = last - first;
        printf("peer %s bytes %lld mbit %.1f\n", inet_ntoa(peer.sin_addr), got,
               secs > 0 ? got * 8 / secs / 1e6 : 0.0);
        fflush(stdout);
    }
    return 0;
}

static int send_bytes(char *hosts, int port, long long n) {
    devices();
    struct sockaddr_in a = addr_of(other(hosts), port);
    double deadline = now() + 60;
    int c;
    for (;;) {
        c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) == 0)
            break;
        /* Not listening yet, or its link not made yet. */
        if (now() > deadline) {
            perror("connect");
            return 1;
        }
        close(c);
        usleep(50000);
    }
    static char chunk[1 << 16];
    memset(chunk, 'x', sizeof chunk);
    for (long long left = n; left > 0;) {
        ssize_t w = write(c, chunk, left < (long long)sizeof chunk ? left : (long long)sizeof chunk);
        if (w <= 0) {
            perror("write");
            return 1;
        }
        left -= w;
    }
    shutdown(c, SHUT_WR);
    char b;
    (void)read(c, &b, 1);
    close(c);
    printf("sent %lld\n", n);
    return 0;
}

static int probe(char *hosts, int port) {
    devices();
    for (char *h = strtok(hosts, ","); h; h = strtok(NULL, ",")) {
        struct sockaddr_in a = addr_of(h, port);
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int rc = connect(c, (struct sockaddr *)&a, sizeof a), err = errno;
        if (rc < 0 && err == EINPROGRESS) {
            struct pollfd p = {.fd = c, .events = POLLOUT};
            socklen_t len = sizeof err;
            if (poll(&p, 1, 2000) == 1)
                getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len);
            else
                err = ETIMEDOUT;
            rc = err ? -1 : 0;
        }
        if (rc == 0)
            printf("%s reached\n", h);
        else
            printf("%s not reached: %s\n", h, strerror(err));
        close(c);
    }
    return 0;
}

static int echo(int port) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(s, (struct sockaddr *)&a, sizeof a)) {
        perror("bind");
        return 1;
    }
    devices();
    long n = 0;
    struct pollfd p = {.fd = s, .events = POLLIN};
    while (poll(&p, 1, n ? 5000 : 60000) == 1) {
        char buf[64];
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t r = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (r > 0 && sendto(s, buf, r, 0, (struct sockaddr *)&peer, len) == r)
            n++;
    }
    printf("echoed %ld\n", n);
    return 0;
}

/* One round trip of datagram `seq`: its time in seconds, or -1 when no
 * answer came within `wait` s (answers to earlier ones are skipped). */
static double round_trip(int s, unsigned seq, double wait) {
    double start = now();
    if (send(s, &seq, sizeof seq, 0) != sizeof seq)
        usleep(10000); /* e.g. ECONNREFUSED: not up yet */
    for (;;) {
        int left = (int)((start + wait - now()) * 1000);
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) != 1)
            return -1;
        unsigned got;
        if (recv(s, &got, sizeof got, 0) == sizeof got && got == seq)
            return now() - start;
    }
}

static int ping(char *hosts, int port, int n) {
    devices();
    struct sockaddr_in a = addr_of(other(hosts), port);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    connect(s, (struct sockaddr *)&a, sizeof a);
    unsigned seq = 0;
    double deadline = now() + 60;
    while (round_trip(s, ++seq, 0.3) < 0)
        if (now() > deadline) {
            printf("ping: no answer in 60 s\n");
            return 1;
        }
    double *rtt = calloc(n, sizeof *rtt);
    int k = 0;
    for (int i = 0; i < n; i++) {
        double t = round_trip(s, ++seq, 0.3);
        if (t >= 0)
            rtt[k++] = t;
    }
    qsort(rtt, k, sizeof *rtt, cmp_double);
    printf("ping answered %d of %d min_us %.0f median_us %.0f\n", k, n, k ? rtt[0] * 1e6 : 0.0,
           k ? rtt[k / 2] * 1e6 : 0.0);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && !strcmp(argv[1], "serve"))
        return serve(atoi(argv[2]), atoi(argv[3]));
    if (argc == 5 && !strcmp(argv[1], "send"))
        return send_bytes(argv[2], atoi(argv[3]), atoll(argv[4]));
    if (argc == 4 && !strcmp(argv[1], "probe"))
        return probe(argv[2], atoi(argv[3]));
    if (argc == 3 && !strcmp(argv[1], "echo"))
        return echo(atoi(argv[2]));
    if (argc == 5 && !strcmp(argv[1], "ping"))
        return ping(argv[2], atoi(argv[3]), atoi(argv[4]));
    fprintf(stderr, "usage: nettalk serve|send|probe|echo|ping ...\n");
    return 2;
}
