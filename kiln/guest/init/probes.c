/* kiln guest init: a server's readiness, asked in its own protocol as the probe tools that compose files name
 * ask it (kiln.compose.health translates them), on 127.0.0.1 inside the guest, 2 s at most, with no program run:
 *   postgres  pg_isready: a startup packet; an authentication request, or any error but "the database system
 *             is starting up / shutting down" (SQLSTATE 57P03, cannot_connect_now), is a server accepting
 *             connections, as libpq's PQping says
 *   mysql     mysqladmin ping / the official mariadb image's healthcheck.sh --connect: the server's greeting
 *             (protocol 10), or an error packet, which only a running server sends ("mysqld is alive" even
 *             when access is denied, as mysqladmin says)
 *   redis     redis-cli ping: PING, and +PONG back; -NOAUTH is a server that answers (no password is sent:
 *             the probe is of liveness); -LOADING, -BUSY and -MASTERDOWN are not ready
 * probe() returns 1 (ready), 0 (not ready: why says what it got) or -1 (no connection: errno). */
#include "init.h"

/* A TCP connection to 127.0.0.1:port, 2 s at most each way (-1 and errno if it cannot be made): the http
 * request's (control.c) and the probes'. */
int connect_loopback(unsigned port) {
    struct sockaddr_in addr;
    struct timeval limit = {2, 0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Read exactly n bytes (-1: the server closed or said nothing in time). */
static int read_all(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            if (r == 0)
                errno = ECONNRESET;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static int postgres(int fd, char *why, size_t len) {
    /* StartupMessage, protocol 3.0: user and database of a role no one has; the answer is all the probe reads */
    static const char params[] = "user\0kiln-probe\0database\0kiln-probe\0application_name\0pg_isready\0";
    unsigned char msg[8 + sizeof params], head[5], body[512];
    uint32_t total = (uint32_t)sizeof msg, size, i;
    total = htonl(total);
    memcpy(msg, &total, 4);
    memcpy(msg + 4, "\x00\x03\x00\x00", 4);
    memcpy(msg + 8, params, sizeof params); /* ends with the list's own NUL */
    if (write(fd, msg, sizeof msg) != (ssize_t)sizeof msg || read_all(fd, head, 5) < 0)
        return -1;
    if (head[0] == 'R')
        return 1; /* it asks for a password: it accepts connections */
    if (head[0] != 'E') {
        snprintf(why, len, "not a PostgreSQL answer (%#x)", head[0]);
        return 0;
    }
    memcpy(&size, head + 1, 4);
    size = ntohl(size);
    if (size < 4 || size - 4 > sizeof body || read_all(fd, body, size - 4) < 0)
        return -1;
    for (i = 0; i + 1 < size - 4 && body[i];) { /* fields: a type byte, a NUL-ended string */
        const char *value = (const char *)body + i + 1;
        size_t vlen = strnlen(value, size - 4 - i - 1);
        if (body[i] == 'C' && vlen == 5 && !memcmp(value, "57P03", 5)) {
            snprintf(why, len, "the database system is starting up or shutting down");
            return 0;
        }
        i += (uint32_t)vlen + 2;
    }
    return 1; /* no such role, or no pg_hba.conf line for it: a server that answers, as pg_isready says */
}

static int mysql(int fd, char *why, size_t len) {
    unsigned char head[5];
    if (read_all(fd, head, 5) < 0)
        return -1;
    if (head[4] == 10 || head[4] == 0xff)
        return 1; /* its greeting, or an error only a running server sends */
    snprintf(why, len, "not a MySQL greeting (%#x)", head[4]);
    return 0;
}

static int redis(int fd, char *why, size_t len) {
    char answer[128];
    ssize_t n = -1;
    if (write(fd, "PING\r\n", 6) != 6 || (n = read(fd, answer, sizeof answer - 1)) <= 0) {
        if (n == 0)
            errno = ECONNRESET;
        return -1;
    }
    answer[n] = '\0';
    answer[strcspn(answer, "\r\n")] = '\0';
    if (!strcmp(answer, "+PONG") || !strncmp(answer, "-NOAUTH", 7))
        return 1;
    snprintf(why, len, "%s", answer);
    return 0;
}

int probe(const char *kind, unsigned port, char *why, size_t len) {
    int fd, ready;
    int (*ask)(int, char *, size_t) = !strcmp(kind, "postgres") ? postgres
                                      : !strcmp(kind, "mysql")  ? mysql
                                      : !strcmp(kind, "redis")  ? redis
                                                                : NULL;
    why[0] = '\0';
    if (!ask) {
        snprintf(why, len, "no probe %s (postgres, mysql, redis)", kind);
        errno = EINVAL;
        return -1;
    }
    if ((fd = connect_loopback(port)) < 0)
        return -1;
    ready = ask(fd, why, len);
    if (ready < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    close(fd);
    return ready;
}
