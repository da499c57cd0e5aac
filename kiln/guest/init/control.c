/*
 * kiln guest init: the control channel (VM only): the second UART, one request and one answer a line.
 *
 * The control channel (VM only) is the second UART, ttyS1 (a UNIX socket on
 * the host, kiln/control.py), in raw mode. The host asks, init answers, one
 * line each way, the answer starting with the request's tag ("@N ping" ->
 * "@N ok ping ..."): a UART drops what arrives before init opens it, so the
 * host sends a request again until its answer comes, and ignores answers to
 * tags it no longer waits for. Every request is safe to repeat.
 *   ping                        -> "ok ping STATE UPTIME_MS"  (STATE: waiting-seed | running)
 *   listening PORT...           -> "ok listening" once every PORT has a TCP socket in LISTEN,
 *                                  else "no listening PORT" (the first one that has none)
 *   seed HEX SECONDS NANOSECONDS -> "ok seed": credit HEX (32 bytes) to the kernel's pool, force
 *                                  the CRNG to reseed, set the clock; then start the app if
 *                                  init was waiting for it (kiln.wait-seed on the command line)
 *   meminfo                     -> "ok meminfo KEY=KIB ...": the guest's own memory figures, from
 *                                  /proc/meminfo (MemTotal, MemFree, MemAvailable, Cached, Shmem,
 *                                  AnonPages, Slab, KernelStack, PageTables) and the app's
 *                                  VmRSS/RssAnon/RssFile (/proc/PID/status), in KiB
 *   stats                       -> "ok stats KEY=VALUE ...": live figures of the guest and the app,
 *                                  read from /proc and /proc/APP (kiln top): mem_total_kib,
 *                                  mem_available_kib, app_rss_kib, app_peak_kib, app_threads,
 *                                  app_fds, app_cpu_ticks, cpu_ticks (all CPUs), hz, tcp_listen,
 *                                  tcp_established, tcp_time_wait, tcp_other, uptime_ms; for a
 *                                  Python app also gc_gen0..2, gc_tracked, gc_collections,
 *                                  gc_collected, gc_uncollectable: init signals kiln's start-up hook
 *                                  (SIGRTMIN+3), which writes them to /tmp/.kiln-gc, and reads that
 *   stack                       -> "ok stack": SIGUSR2 to the app; a Python app's start-up hook
 *                                  (kiln/guest/start.py) prints every thread's stack on stderr
 *   threads                     -> "ok threads TID:STATE:NAME ...": the app's threads (/proc/APP/task)
 *   http PORT PATH              -> "ok http STATUS" (GET http://127.0.0.1:PORT/PATH inside the guest,
 *                                  2 s at most), else "no http REASON": compose's healthchecks
 *   probe KIND PORT             -> "ok probe" when the server on 127.0.0.1:PORT answers its own protocol
 *                                  as ready (KIND: postgres, mysql, redis; probes.c), else "no probe
 *                                  REASON": compose's pg_isready, mysqladmin ping and redis-cli ping
 *   signal NUMBER               -> "ok signal NUMBER": the signal to the app (kiln stop's SIGTERM, or the
 *                                  image's StopSignal); the app then ends as it does, and init with it
 *   anything else               -> "err VERB unknown request"
 * While no host is connected, QEMU drops what init writes and init reads
 * nothing: a UART has no notion of a peer, and needs none.
 */
#include "init.h"

/* ---- the control channel (VM only) ------------------------------------------ */

int wake_pipe[2] = {-1, -1};
int ctl_fd = -1;
int waiting_seed;   /* kiln.wait-seed: the app starts after the host's seed */
char ctl_in[4096];
size_t ctl_len;
struct timespec boot_time;

void wake(int sig) {
    (void)sig;
    if (write(wake_pipe[1], "w", 1) < 0) {
        /* the pipe is full: init is awake already */
    }
}

void open_control(void) {
    struct termios t;
    ctl_fd = open(CONTROL_TTY, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (ctl_fd < 0)
        return; /* no second UART: a VM without a control channel */
    if (tcgetattr(ctl_fd, &t) < 0) {
        close(ctl_fd); /* the port exists in the driver but no UART answers there */
        ctl_fd = -1;
        return;
    }
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD; /* no modem lines: the host coming and going is no hangup */
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(ctl_fd, TCSANOW, &t) < 0)
        say("control channel %s: %s", CONTROL_TTY, strerror(errno));
    tcflush(ctl_fd, TCIOFLUSH); /* what came in cooked mode (and its echo): the host sends it again */
}

char ctl_tag[24]; /* the tag of the request being answered ("@N "), or "" */
volatile pid_t app_pid; /* the app, once started (0 before) */

void reply(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    int n, off = 0, tries = 0;
    n = snprintf(buf, sizeof buf - 1, "%s", ctl_tag);
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - 1 - n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    while (off < n && tries < 100) {
        ssize_t w = write(ctl_fd, buf + off, n - off);
        if (w > 0)
            off += (int)w;
        else if (w < 0 && errno == EAGAIN) {
            struct pollfd p = {ctl_fd, POLLOUT, 0};
            poll(&p, 1, 10);
            tries++;
        } else
            return; /* the host went away */
    }
}

/* Does a TCP socket listen on `port` (IPv4 or IPv6, any address)? */
int listening_on(unsigned port) {
    static const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    char line[512];
    int t, found = 0;
    for (t = 0; t < 2 && !found; t++) {
        FILE *f = fopen(tables[t], "r");
        if (!f)
            continue;
        while (!found && fgets(line, sizeof line, f)) {
            char local[64];
            unsigned st, p;
            char *colon;
            if (sscanf(line, " %*d: %63s %*s %x", local, &st) != 2)
                continue;
            colon = strrchr(local, ':');
            if (colon && sscanf(colon + 1, "%x", &p) == 1 && p == port && st == 0x0A)
                found = 1;
        }
        fclose(f);
    }
    return found;
}

/* Append "KEY=VALUE" to out for each line of `path` ("Key:   VALUE kB") whose key is in keys. */

int http_status(unsigned port, const char *path) {
    char head[64];
    ssize_t n;
    int fd = connect_loopback(port), status = -1;
    if (fd < 0)
        return -1;
    if (dprintf(fd, "GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n", path) > 0 &&
        (n = read(fd, head, sizeof head - 1)) > 0) {
        head[n] = '\0';
        if (sscanf(head, "HTTP/%*s %d", &status) != 1) {
            status = -1;
            errno = EPROTO;
        }
    }
    close(fd);
    return status;
}

void request(char *line) {
    char *save = NULL, *verb = strtok_r(line, " ", &save), *arg;
    ctl_tag[0] = '\0';
    if (verb && verb[0] == '@') {
        snprintf(ctl_tag, sizeof ctl_tag, "%.20s ", verb);
        verb = strtok_r(NULL, " ", &save);
    }
    if (!verb)
        return;
    if (!strcmp(verb, "ping")) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        reply("ok ping %s %ld", waiting_seed ? "waiting-seed" : "running",
              (long)((now.tv_sec - boot_time.tv_sec) * 1000 + (now.tv_nsec - boot_time.tv_nsec) / 1000000));
    } else if (!strcmp(verb, "listening")) {
        while ((arg = strtok_r(NULL, " ", &save))) {
            if (!listening_on((unsigned)atoi(arg))) {
                reply("no listening %s", arg);
                return;
            }
        }
        reply("ok listening");
    } else if (!strcmp(verb, "seed")) {
        char *hex = strtok_r(NULL, " ", &save), *sec = strtok_r(NULL, " ", &save),
             *nsec = strtok_r(NULL, " ", &save);
        struct timespec ts;
        if (!hex || !sec || !nsec || strlen(hex) != 64) {
            reply("err seed expected: seed HEX64 SECONDS NANOSECONDS");
            return;
        }
        if (credit_seed(hex, 1) < 0) {
            reply("err seed %s", strerror(errno));
            return;
        }
        memset(hex, 0, strlen(hex));
        ts.tv_sec = atol(sec);
        ts.tv_nsec = atol(nsec);
        if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
            reply("err seed clock: %s", strerror(errno));
            return;
        }
        waiting_seed = 0;
        reply("ok seed");
    } else if (!strcmp(verb, "meminfo")) {
        meminfo();
    } else if (!strcmp(verb, "stats")) {
        stats();
    } else if (!strcmp(verb, "stack")) {
        if (app_pid <= 0 || kill(app_pid, SIGUSR2) < 0)
            reply("no stack the app is not running");
        else
            reply("ok stack");
    } else if (!strcmp(verb, "threads")) {
        threads();
    } else if (!strcmp(verb, "http")) {
        char *port = strtok_r(NULL, " ", &save), *path = strtok_r(NULL, " ", &save);
        int status;
        if (!port || !path || path[0] != '/') {
            reply("err http expected: http PORT /PATH");
            return;
        }
        status = http_status((unsigned)atoi(port), path);
        if (status < 0)
            reply("no http %s", strerror(errno));
        else
            reply("ok http %d", status);
    } else if (!strcmp(verb, "probe")) {
        char *kind = strtok_r(NULL, " ", &save), *port = strtok_r(NULL, " ", &save), why[160];
        int ready;
        if (!kind || !port || atoi(port) <= 0 || atoi(port) > 65535) {
            reply("err probe expected: probe KIND PORT");
            return;
        }
        ready = probe(kind, (unsigned)atoi(port), why, sizeof why);
        if (ready > 0)
            reply("ok probe");
        else
            reply("no probe %s", ready < 0 && !why[0] ? strerror(errno) : why);
    } else if (!strcmp(verb, "signal")) {
        char *num = strtok_r(NULL, " ", &save);
        int sig = num ? atoi(num) : 0;
        if (sig <= 0 || sig >= NSIG) {
            reply("err signal expected: signal NUMBER");
            return;
        }
        if (app_pid <= 0)
            reply("no signal the app has not started");
        else if (kill(app_pid, sig) < 0)
            reply("no signal %s", strerror(errno));
        else
            reply("ok signal %d", sig);
    } else
        reply("err %s unknown request", verb);
}

/* Read what the host sent and answer every complete line. */
void serve_control(short revents) {
    ssize_t n;
    char *nl;
    if (!(revents & POLLIN))
        return;
    while ((n = read(ctl_fd, ctl_in + ctl_len, sizeof ctl_in - 1 - ctl_len)) > 0) {
        ctl_len += (size_t)n;
        ctl_in[ctl_len] = '\0';
        while ((nl = memchr(ctl_in, '\n', ctl_len))) {
            size_t used = (size_t)(nl - ctl_in) + 1;
            *nl = '\0';
            request(ctl_in);
            memmove(ctl_in, ctl_in + used, ctl_len - used);
            ctl_len -= used;
        }
        if (ctl_len == sizeof ctl_in - 1)
            ctl_len = 0; /* a line longer than any request: drop it */
    }
}

/* Fill *fd with the control channel, if there is one; return how many were added. */
int control_pollfd(struct pollfd *fd) {
    if (ctl_fd < 0)
        return 0;
    fd->fd = ctl_fd;
    fd->events = POLLIN;
    fd->revents = 0;
    return 1;
}

/* kiln.wait-seed (a snapshot made "after kernel"): answer the host until it has sent the seed. */
void wait_for_seed(void) {
    char drain[64];
    waiting_seed = 1;
    say("waiting for the host's seed on the control channel");
    while (waiting_seed) {
        struct pollfd fds[2] = {{wake_pipe[0], POLLIN, 0}};
        int n = 1 + control_pollfd(&fds[1]);
        if (poll(fds, n, -1) < 0 && errno != EINTR)
            break;
        while (read(wake_pipe[0], drain, sizeof drain) > 0)
            ;
        if (n > 1)
            serve_control(fds[1].revents);
    }
}
