/* kiln guest init: the client's own address behind a published port (kiln.guest.protocol, CLIENTS_PORT).
 *
 * kiln's relay on the host accepts each connection to a published port and hands it to QEMU's user-network
 * forward, which delivers it here, on eth0's CLIENTS_PORT, from the user network's gateway: without this the
 * app would see every client as that gateway (10.0.2.2). Each connection opens with a PROXY protocol v1 line,
 * as HAProxy's specification writes it:
 *
 *     PROXY TCP4 CLIENT-IP HOST-IP CLIENT-PORT GUEST-PORT\r\n
 *
 * The forwarder connects to the app on 127.0.0.1:GUEST-PORT *from the client's address*, then copies both ways:
 * the app's accept(), its access log and its rate limits see the client, as behind Docker's iptables forward, and
 * the app needs no PROXY support (Cloudflare's mmproxy does the same for servers that lack it).
 *   - a client on the host's loopback (127.0.0.0/8) has an address that is local in the guest too: bound as is;
 *   - any other IPv4 client is given a local route (to lo) while a connection from it is open, so that the app's
 *     answers to it come back here; not one on a network of the guest's own (eth0..eth4: the gateway, a compose
 *     peer), which that route would cut off, nor an IPv6 client: the app then sees 127.0.0.1.
 * It runs as init's child (kiln.clients on the kernel command line), started once a first start's steps are done
 * (each step's end ends every process but init) and before the app, with CAP_NET_ADMIN alone (the routes) and
 * no_new_privs, in one poll() loop for every connection; it takes connections from the gateway only. */
#include "init.h"
#include <ifaddrs.h>
#include <netinet/tcp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#define CLIENTS_PORT 61000 /* kiln.guest.protocol.CLIENTS_PORT */
#define MAX_CONNS 1000
#define BUF 16384
#define LINE_MAX_ 107 /* the longest PROXY v1 line, CRLF included */

struct flow {      /* one direction: bytes read from one side, not yet written to the other */
    char *buf;
    size_t len, off;
    int eof;       /* its source has ended; the other side is told once the buffer is written */
    int shut;
};

struct conn {
    int client, app;
    int state; /* HEADER, CONNECTING, COPYING */
    unsigned guest_port;
    in_addr_t routed; /* a client address given a local route for this connection (0: none) */
    struct sockaddr_in source;
    int bind_source;
    int tried_eth0;
    struct flow up, down; /* client -> app, app -> client */
};
enum { HEADER, CONNECTING, COPYING };

static struct conn *conns[MAX_CONNS];
static int nconns;
static int nl_fd = -1;
static struct in_addr gateway, eth0_addr;

struct net_ {
    in_addr_t addr, mask;
};
static struct net_ own_nets[8];
static int nown_nets;

struct route_ref {
    in_addr_t addr;
    int refs;
};
static struct route_ref routes[MAX_CONNS];

/* RTM_NEWROUTE / RTM_DELROUTE of "local ADDR/32 dev lo table local"; 0 on success. */
static int local_route(in_addr_t addr, int add) {
    struct {
        struct nlmsghdr nh;
        struct rtmsg rt;
        char attrs[64];
    } req;
    struct rtattr *rta;
    char reply[512];
    int lo = (int)if_nametoindex("lo");
    ssize_t n;
    memset(&req, 0, sizeof req);
    req.nh.nlmsg_len = NLMSG_LENGTH(sizeof req.rt);
    req.nh.nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0);
    req.rt.rtm_family = AF_INET;
    req.rt.rtm_dst_len = 32;
    req.rt.rtm_table = RT_TABLE_LOCAL;
    req.rt.rtm_protocol = RTPROT_STATIC;
    req.rt.rtm_scope = RT_SCOPE_HOST;
    req.rt.rtm_type = RTN_LOCAL;
    rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
    rta->rta_type = RTA_DST;
    rta->rta_len = RTA_LENGTH(sizeof addr);
    memcpy(RTA_DATA(rta), &addr, sizeof addr);
    req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
    rta = (struct rtattr *)((char *)&req + req.nh.nlmsg_len);
    rta->rta_type = RTA_OIF;
    rta->rta_len = RTA_LENGTH(sizeof lo);
    memcpy(RTA_DATA(rta), &lo, sizeof lo);
    req.nh.nlmsg_len += RTA_ALIGN(rta->rta_len);
    if (send(nl_fd, &req, req.nh.nlmsg_len, 0) < 0)
        return -1;
    n = recv(nl_fd, reply, sizeof reply, 0);
    if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
        struct nlmsghdr *h = (struct nlmsghdr *)reply;
        struct nlmsgerr *e = NLMSG_DATA(h);
        if (h->nlmsg_type == NLMSG_ERROR && e->error) {
            errno = -e->error;
            return -1;
        }
        return 0;
    }
    return -1;
}

static int route_hold(in_addr_t addr) {
    int i, free_slot = -1;
    for (i = 0; i < MAX_CONNS; i++) {
        if (routes[i].refs && routes[i].addr == addr) {
            routes[i].refs++;
            return 0;
        }
        if (!routes[i].refs && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0 || local_route(addr, 1) < 0)
        return -1;
    routes[free_slot].addr = addr;
    routes[free_slot].refs = 1;
    return 0;
}

static void route_release(in_addr_t addr) {
    int i;
    for (i = 0; i < MAX_CONNS; i++)
        if (routes[i].refs && routes[i].addr == addr) {
            if (--routes[i].refs == 0)
                local_route(addr, 0);
            return;
        }
}

/* The guest's own IPv4 networks but loopback's (eth0's is also where the forwarder listens). */
static void read_own_networks(void) {
    struct ifaddrs *all, *ifa;
    if (getifaddrs(&all) < 0)
        return;
    for (ifa = all; ifa; ifa = ifa->ifa_next) {
        struct sockaddr_in *a = (struct sockaddr_in *)ifa->ifa_addr, *m = (struct sockaddr_in *)ifa->ifa_netmask;
        if (!a || a->sin_family != AF_INET || !m || !strcmp(ifa->ifa_name, "lo") || nown_nets >= 8)
            continue;
        own_nets[nown_nets].addr = a->sin_addr.s_addr;
        own_nets[nown_nets++].mask = m->sin_addr.s_addr;
        if (!strcmp(ifa->ifa_name, "eth0"))
            eth0_addr = a->sin_addr;
    }
    freeifaddrs(all);
}

static int on_own_network(in_addr_t addr) {
    int i;
    for (i = 0; i < nown_nets; i++)
        if ((addr & own_nets[i].mask) == (own_nets[i].addr & own_nets[i].mask))
            return 1;
    return 0;
}

static void end(int i) {
    struct conn *c = conns[i];
    close(c->client);
    if (c->app >= 0)
        close(c->app);
    if (c->routed)
        route_release(c->routed);
    free(c->up.buf);
    free(c->down.buf);
    free(c);
    conns[i] = conns[--nconns];
}

/* Open the connection to the app: from the client's address where it can be the source, to 127.0.0.1 (then,
 * if nothing listens there, eth0's address: a server that listens on that alone); 0, or -1 to end. */
static int open_app(struct conn *c) {
    struct sockaddr_in to;
    int one = 1;
    c->app = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->app < 0)
        return -1;
    setsockopt(c->app, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->bind_source) { /* the address; a port of the guest's own choosing, as the client's may be taken here */
        setsockopt(c->app, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->app, (struct sockaddr *)&c->source, sizeof c->source) < 0)
            say("clients: cannot connect from %s: %s", inet_ntoa(c->source.sin_addr), strerror(errno));
    }
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((unsigned short)c->guest_port);
    to.sin_addr.s_addr = c->tried_eth0 ? eth0_addr.s_addr : htonl(INADDR_LOOPBACK);
    if (connect(c->app, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS)
        return -1;
    c->state = CONNECTING;
    return 0;
}

/* The PROXY line, once it has all come (the bytes after it are the client's, kept in up); 1 done, 0 more to
 * come, -1 not a PROXY line. */
static int read_header(struct conn *c) {
    char line[LINE_MAX_ + 1], proto[8], src[64], dst[64], *crlf;
    unsigned sport, dport;
    size_t len;
    ssize_t n = read(c->client, c->up.buf + c->up.len, LINE_MAX_ - c->up.len);
    if (n <= 0)
        return n < 0 && errno == EAGAIN ? 0 : -1;
    c->up.len += (size_t)n;
    memcpy(line, c->up.buf, c->up.len);
    line[c->up.len] = '\0';
    if (!(crlf = strstr(line, "\r\n")))
        return c->up.len >= LINE_MAX_ ? -1 : 0;
    *crlf = '\0';
    len = (size_t)(crlf - line) + 2;
    if (sscanf(line, "PROXY %7s %63s %63s %u %u", proto, src, dst, &sport, &dport) != 5 || !dport || dport > 65535)
        return -1;
    memmove(c->up.buf, c->up.buf + len, c->up.len - len);
    c->up.len -= len;
    c->guest_port = dport;
    memset(&c->source, 0, sizeof c->source);
    c->source.sin_family = AF_INET;
    (void)sport;
    if (!strcmp(proto, "TCP4") && inet_pton(AF_INET, src, &c->source.sin_addr) == 1) {
        in_addr_t a = c->source.sin_addr.s_addr;
        if ((ntohl(a) >> 24) == 127)
            c->bind_source = 1;
        else if (!on_own_network(a) && ntohl(a) != 0 && ntohl(a) < 0xe0000000u && route_hold(a) == 0) {
            c->routed = a;
            c->bind_source = 1;
        }
    }
    return 1;
}

static void take_connections(int listener) {
    for (;;) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        struct conn *c;
        int fd = accept4(listener, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (peer.sin_addr.s_addr != gateway.s_addr || nconns >= MAX_CONNS || !(c = calloc(1, sizeof *c))) {
            close(fd); /* only QEMU's forward (the gateway) speaks for clients; the relay retries a full one */
            continue;
        }
        c->client = fd;
        c->app = -1;
        c->up.buf = malloc(BUF);
        c->down.buf = malloc(BUF);
        if (!c->up.buf || !c->down.buf) {
            free(c->up.buf);
            free(c->down.buf);
            free(c);
            close(fd);
            continue;
        }
        conns[nconns++] = c;
    }
}

/* Move what can move between from and to through f; -1 when the connection is over. */
static int pump(int from, int to, struct flow *f, short from_events, short to_events) {
    if (f->len == f->off && !f->eof && (from_events & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = read(from, f->buf, BUF);
        if (n > 0) {
            f->len = (size_t)n;
            f->off = 0;
        } else if (n == 0)
            f->eof = 1;
        else if (errno != EAGAIN && errno != EINTR)
            return -1;
    }
    if (f->off < f->len && (to_events & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = write(to, f->buf + f->off, f->len - f->off);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (n > 0)
            f->off += (size_t)n;
        if (f->off == f->len)
            f->off = f->len = 0;
    }
    if (f->eof && f->len == f->off && !f->shut) {
        shutdown(to, SHUT_WR);
        f->shut = 1;
    }
    return 0;
}

static void serve(int listener) {
    static struct pollfd fds[1 + 2 * MAX_CONNS];
    for (;;) {
        int i, n = 1;
        fds[0].fd = listener;
        fds[0].events = POLLIN;
        for (i = 0; i < nconns; i++) {
            struct conn *c = conns[i];
            fds[n].fd = c->client;
            fds[n].events = (short)((c->state == HEADER || (c->state == COPYING && c->up.len == 0 && !c->up.eof)
                                         ? POLLIN : 0) |
                                    (c->state == COPYING && c->down.len > c->down.off ? POLLOUT : 0));
            fds[n + 1].fd = c->app;
            fds[n + 1].events = (short)(c->state == CONNECTING ? POLLOUT
                                        : c->state == COPYING
                                            ? ((c->down.len == 0 && !c->down.eof ? POLLIN : 0) |
                                               (c->up.len > c->up.off ? POLLOUT : 0))
                                            : 0);
            n += 2;
        }
        if (poll(fds, (nfds_t)n, -1) < 0)
            continue;
        for (i = nconns - 1; i >= 0; i--) {
            struct conn *c = conns[i];
            short ce = fds[1 + 2 * i].revents, ae = fds[2 + 2 * i].revents;
            int done = 0;
            if (c->state == HEADER && ce) {
                int r = read_header(c);
                done = r < 0 || (r == 1 && open_app(c) < 0);
            } else if (c->state == CONNECTING && ae) {
                int err = 0;
                socklen_t elen = sizeof err;
                getsockopt(c->app, SOL_SOCKET, SO_ERROR, &err, &elen);
                if (err == ECONNREFUSED && !c->tried_eth0 && eth0_addr.s_addr) {
                    close(c->app);
                    c->tried_eth0 = 1;
                    done = open_app(c) < 0;
                } else if (err)
                    done = 1; /* nothing listens yet: closed unanswered, the relay tries again */
                else
                    c->state = COPYING;
            } else if (c->state == COPYING) {
                done = pump(c->client, c->app, &c->up, ce, ae) < 0 || pump(c->app, c->client, &c->down, ae, ce) < 0 ||
                       (c->up.shut && c->down.shut);
            }
            if (done)
                end(i);
        }
        if (fds[0].revents & POLLIN)
            take_connections(listener);
    }
}

/* The forwarder, taking connections from `gw` alone: a child that keeps CAP_NET_ADMIN alone; its pid, or -1. */
pid_t client_forwarder(const char *gw) {
    struct sockaddr_in addr;
    int listener, one = 1;
    pid_t pid;
    if (inet_pton(AF_INET, gw, &gateway) != 1)
        return -1;
    read_own_networks();
    if (!eth0_addr.s_addr) {
        say("clients: eth0 has no address");
        return -1;
    }
    listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(CLIENTS_PORT);
    addr.sin_addr = eth0_addr;
    if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 1024) < 0) {
        say("clients: cannot listen on port %d: %s", CLIENTS_PORT, strerror(errno));
        if (listener >= 0)
            close(listener);
        return -1;
    }
    pid = fork();
    if (pid < 0)
        say("clients: %s", strerror(errno));
    if (pid != 0) {
        close(listener);
        return pid;
    }
    close(wake_pipe[0]); /* none of init's channels: its wake-up pipe, the control channel, the kernel's log */
    close(wake_pipe[1]);
    if (ctl_fd >= 0)
        close(ctl_fd);
    if (kmsg_fd >= 0)
        close(kmsg_fd);
    signal(SIGPIPE, SIG_IGN);
    nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    keep_only(1ul << CAP_NET_ADMIN);
    serve(listener);
    _exit(0);
}

/* kiln.clients on the kernel command line: start the forwarder. */
void start_clients(void) {
    char flag[8], gw[64];
    if (cmdline_param("kiln.clients", flag, sizeof flag) && cmdline_param("kiln.gw", gw, sizeof gw))
        client_forwarder(gw);
}
