/* kiln guest init: networking (VM only): lo, eth0, eth1..eth4 (compose's networks), /etc/hosts. */
#include "init.h"

/* ---- networking (VM only) ---------------------------------------------- */

int set_addr(int fd, const char *ifname, unsigned long req, const char *addr) {
    struct ifreq ifr;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    sin->sin_family = AF_INET;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
        return -1;
    return ioctl(fd, req, &ifr);
}

int link_up(int fd, const char *ifname) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        return -1;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(fd, SIOCSIFFLAGS, &ifr);
}

/* Give ifname the address "IP[/PREFIX]" (default /24) and bring it up; 0 on success. */
int configure(int fd, const char *ifname, const char *cidr) {
    char ip[64], *p, mask[32];
    int prefix = 24;
    struct in_addr m;
    snprintf(ip, sizeof ip, "%s", cidr);
    if ((p = strchr(ip, '/'))) {
        *p = '\0';
        prefix = atoi(p + 1);
    }
    m.s_addr = prefix ? htonl(0xffffffffu << (32 - prefix)) : 0;
    inet_ntop(AF_INET, &m, mask, sizeof mask);
    if (set_addr(fd, ifname, SIOCSIFADDR, ip) < 0 || set_addr(fd, ifname, SIOCSIFNETMASK, mask) < 0 ||
        link_up(fd, ifname) < 0) {
        say("%s: %s", ifname, strerror(errno));
        return -1;
    }
    return 0;
}

/* Decode hex into out (NUL-terminated); the length, or -1 if it is not hex or does not fit. */
int unhex(const char *hex, char *out, size_t outlen) {
    size_t i, n = 0;
    for (i = 0; hex[i] && hex[i + 1]; i += 2) {
        unsigned int byte;
        if (n + 1 >= outlen || sscanf(hex + i, "%2x", &byte) != 1)
            return -1;
        out[n++] = (char)byte;
    }
    out[n] = '\0';
    return (int)n;
}

/* kiln.hosts=HEX: more lines for /etc/hosts (the names of a compose project's services).
 * The root is read-only: the whole file is written to /tmp and bound over /etc/hosts. */
void add_hosts(void) {
    static char hex[4096];
    char extra[2048], base[1024] = "";
    ssize_t n = 0;
    int fd;
    if (!cmdline_param("kiln.hosts", hex, sizeof hex) || unhex(hex, extra, sizeof extra) < 0)
        return;
    fd = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        say("kiln.hosts: the image has no /etc/hosts to extend");
        return;
    }
    n = read(fd, base, sizeof base - 1);
    close(fd);
    base[n > 0 ? n : 0] = '\0';
    fd = open("/tmp/.kiln-hosts", O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0444);
    if (fd < 0 || write(fd, base, strlen(base)) < 0 || write(fd, extra, strlen(extra)) < 0) {
        say("kiln.hosts: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    close(fd);
    mount_fs("/tmp/.kiln-hosts", "/etc/hosts", NULL, MS_BIND, NULL);
    mount_fs(NULL, "/etc/hosts", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
}

/* kiln.ipN=IP/PREFIX: ethN's address on the N-th of a compose service's networks (kiln.guest.protocol.MAX_LANS) */
static const char *lan_param(int n, char *buf, size_t len) {
    switch (n) {
    case 1:
        return cmdline_param("kiln.ip1", buf, len);
    case 2:
        return cmdline_param("kiln.ip2", buf, len);
    case 3:
        return cmdline_param("kiln.ip3", buf, len);
    case 4:
        return cmdline_param("kiln.ip4", buf, len);
    default:
        return NULL;
    }
}

void setup_network(void) {
    char gwbuf[64], cidrbuf[64], privbuf[64], dev[16];
    const char *gw = cmdline_param("kiln.gw", gwbuf, sizeof gwbuf);
    const char *cidr = cmdline_param("kiln.ip", cidrbuf, sizeof cidrbuf);
    const char *priv;
    int fd, n;
    struct rtentry rt;

    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (cidr)
            say("no IPv4 in this kernel: %s", strerror(errno));
        return;
    }
    if (link_up(fd, "lo") < 0)
        say("lo: %s", strerror(errno));
    for (n = 1; (priv = lan_param(n, privbuf, sizeof privbuf)); n++) { /* a compose project's networks */
        snprintf(dev, sizeof dev, "eth%d", n);
        configure(fd, dev, priv);
    }
    if (!cidr || configure(fd, "eth0", cidr) < 0) {
        close(fd);
        return;
    }
    if (gw) {
        memset(&rt, 0, sizeof rt);
        ((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
        ((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
        ((struct sockaddr_in *)&rt.rt_gateway)->sin_family = AF_INET;
        inet_pton(AF_INET, gw, &((struct sockaddr_in *)&rt.rt_gateway)->sin_addr);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        if (ioctl(fd, SIOCADDRT, &rt) < 0)
            say("default route via %s: %s", gw, strerror(errno));
    }
    close(fd);
}

/* kiln.env=HEX: "KEY=VALUE" lines for the app's environment (kiln run -e, compose's environment),
 * over what /kiln/config sets, as --env does in the sandbox. */
char env_text[2048];
void env_from_cmdline(void) {
    static char hex[4096];
    char *line, *save = NULL;
    if (!cmdline_param("kiln.env", hex, sizeof hex) || unhex(hex, env_text, sizeof env_text) < 0)
        return;
    for (line = strtok_r(env_text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (strchr(line, '=') && nsandbox_env < (int)(sizeof sandbox_env / sizeof *sandbox_env))
            sandbox_env[nsandbox_env++] = line;
}
