/*
 * kiln guest init: the first and only supervisor process of a kiln unikernel.
 *
 * In the VM (PID 1, started by the kernel) it mounts /dev, /proc, /sys and
 * /tmp, brings up lo and eth0, credits the entropy seed the host passed on the
 * kernel command line, runs the app as its only child, and when the app ends
 * reports the app's exit status to the host and powers the VM off.
 *
 * On the host (`init --sandbox ROOT`, run by kiln's unix target inside fresh
 * mount/PID/IPC/UTS namespaces) it bind-mounts ROOT read-only, gives it its own
 * /proc, /dev and /tmp, pivots into it, drops every capability but
 * CAP_NET_BIND_SERVICE, runs the app the same way and exits with its status.
 *
 * On the kernel command line, besides kiln.ip/kiln.gw (eth0) and kiln.seed:
 * kiln.ip1=IP/PREFIX configures eth1 (a compose project's private network),
 * kiln.hosts=HEX adds hex-encoded lines to /etc/hosts (bound over the
 * read-only one), and kiln.env=HEX adds "KEY=VALUE" lines to the app's
 * environment (`kiln run -e`, compose's `environment`).
 *
 * The app is described by /kiln/config, written by kiln at build time, one
 * setting a line:  "arg VALUE", "env KEY=VALUE", "workdir DIR", "hostname NAME",
 * "volume TAG PATH" (a 9p share in the VM; `--volume HOST=PATH` in the sandbox;
 * a fresh tmpfs when the host gave none), and "seccomp ACTION NR NAME", the
 * syscall policy of kiln/policy.py.
 *
 * The policy is a seccomp filter installed in the app's process just before
 * it starts the app. Refused calls come to init by seccomp user notification:
 * init names the call on the console and fails it with EPERM. The app's own
 * execve is the one call init lets through.
 *
 * The exit status travels to QEMU through the isa-debug-exit device (QEMU then
 * exits with (status << 1) | 1); statuses of 127 and above are sent as 127 and
 * the exact value is in the console line "kiln-init: exit status N".
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
 *   anything else               -> "err VERB unknown request"
 * While no host is connected, QEMU drops what init writes and init reads
 * nothing: a UART has no notion of a peer, and needs none.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/random.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <termios.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONFIG_PATH "/kiln/config"
#define DEBUG_EXIT_PORT 0xf4
#define MAX_ITEMS 256
#define CONTROL_TTY "/dev/ttyS1"

static char *app_argv[MAX_ITEMS + 1];
static char *app_envp[MAX_ITEMS + 1];
static char workdir[4096] = "/";
static char hostname[256] = "kiln";
static int sandboxed;

struct volume {
    char tag[32];
    char path[256];
    int mounted;
};
static struct volume volumes[16];
static int nvolumes;

enum rule_action { NOTIFY, NOTIFY_UNLESS_THREAD, ENOSYS_ };
struct rule {
    enum rule_action action;
    int nr;
    char name[32];
};
static struct rule rules[64];
static int nrules;

static void say(const char *fmt, ...) {
    va_list ap;
    char buf[1024];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    dprintf(2, "kiln-init: %s\n", buf);
}

static void must(int ok, const char *what) {
    if (!ok) {
        say("%s: %s", what, strerror(errno));
        _exit(125);
    }
}

static void load_config(const char *path) {
    FILE *f = fopen(path, "r");
    char line[8192];
    int argc = 0, envc = 0;
    must(f != NULL, "cannot open " CONFIG_PATH);
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        char *value;
        if (n && line[n - 1] == '\n')
            line[--n] = '\0';
        value = strchr(line, ' ');
        if (!value)
            continue;
        *value++ = '\0';
        if (!strcmp(line, "arg") && argc < MAX_ITEMS)
            app_argv[argc++] = strdup(value);
        else if (!strcmp(line, "env") && envc < MAX_ITEMS)
            app_envp[envc++] = strdup(value);
        else if (!strcmp(line, "workdir"))
            snprintf(workdir, sizeof workdir, "%s", value);
        else if (!strcmp(line, "hostname"))
            snprintf(hostname, sizeof hostname, "%s", value);
        else if (!strcmp(line, "volume") && nvolumes < 16) {
            struct volume *v = &volumes[nvolumes];
            if (sscanf(value, "%31s %255s", v->tag, v->path) == 2)
                nvolumes++;
        } else if (!strcmp(line, "seccomp") && nrules < 64) {
            char action[32];
            struct rule *r = &rules[nrules];
            if (sscanf(value, "%31s %d %31s", action, &r->nr, r->name) != 3)
                continue;
            if (!strcmp(action, "notify"))
                r->action = NOTIFY;
            else if (!strcmp(action, "notify-unless-thread"))
                r->action = NOTIFY_UNLESS_THREAD;
            else if (!strcmp(action, "enosys"))
                r->action = ENOSYS_;
            else
                continue;
            nrules++;
        }
    }
    fclose(f);
    if (argc == 0) {
        say("%s names no program to run", CONFIG_PATH);
        _exit(125);
    }
}

/* Copy the value of "key[=value]" on the kernel command line into out; NULL if absent. */
static char *cmdline_param(const char *key, char *out, size_t outlen) {
    char *tok, *save = NULL, copy[4096];
    size_t klen = strlen(key);
    int fd = open("/proc/cmdline", O_RDONLY);
    ssize_t n;
    if (fd < 0)
        return NULL;
    n = read(fd, copy, sizeof copy - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    copy[n] = '\0';
    for (tok = strtok_r(copy, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
        if (!strncmp(tok, key, klen) && (tok[klen] == '=' || tok[klen] == '\0')) {
            snprintf(out, outlen, "%s", tok[klen] ? tok + klen + 1 : "");
            return out;
        }
    }
    return NULL;
}

static void mount_fs(const char *src, const char *dst, const char *type, unsigned long flags,
                     const char *data) {
    if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
        say("mount %s on %s: %s", type ? type : src, dst, strerror(errno));
}

static char *sandbox_env[32]; /* KEY=VALUE over the image's environment: --env, kiln.env */
static int nsandbox_env;

/* ---- networking (VM only) ---------------------------------------------- */

static int set_addr(int fd, const char *ifname, unsigned long req, const char *addr) {
    struct ifreq ifr;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    sin->sin_family = AF_INET;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
        return -1;
    return ioctl(fd, req, &ifr);
}

static int link_up(int fd, const char *ifname) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        return -1;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(fd, SIOCSIFFLAGS, &ifr);
}

/* Give ifname the address "IP[/PREFIX]" (default /24) and bring it up; 0 on success. */
static int configure(int fd, const char *ifname, const char *cidr) {
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
static int unhex(const char *hex, char *out, size_t outlen) {
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
static void add_hosts(void) {
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

static void setup_network(void) {
    char gwbuf[64], cidrbuf[64], privbuf[64];
    const char *gw = cmdline_param("kiln.gw", gwbuf, sizeof gwbuf);
    const char *cidr = cmdline_param("kiln.ip", cidrbuf, sizeof cidrbuf);
    const char *priv = cmdline_param("kiln.ip1", privbuf, sizeof privbuf); /* a compose project's network */
    int fd;
    struct rtentry rt;

    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (cidr)
            say("no IPv4 in this kernel: %s", strerror(errno));
        return;
    }
    if (link_up(fd, "lo") < 0)
        say("lo: %s", strerror(errno));
    if (priv)
        configure(fd, "eth1", priv);
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
static char env_text[2048];
static void env_from_cmdline(void) {
    static char hex[4096];
    char *line, *save = NULL;
    if (!cmdline_param("kiln.env", hex, sizeof hex) || unhex(hex, env_text, sizeof env_text) < 0)
        return;
    for (line = strtok_r(env_text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (strchr(line, '=') && nsandbox_env < (int)(sizeof sandbox_env / sizeof *sandbox_env))
            sandbox_env[nsandbox_env++] = line;
}

/* ---- entropy (VM only) -------------------------------------------------- */

/* Credit the hex-encoded seed to the kernel's pool; with reseed, make the CRNG use it now
 * (a restored clone must not go on from the snapshot's random state). 0 on success. */
static int credit_seed(const char *hex, int reseed) {
    struct {
        int entropy_count;
        int buf_size;
        unsigned char buf[64];
    } seed;
    int fd, i, n = 0, ok = 0;

    for (i = 0; hex[i] && hex[i + 1] && n < (int)sizeof seed.buf; i += 2) {
        unsigned int byte;
        if (sscanf(hex + i, "%2x", &byte) != 1)
            break;
        seed.buf[n++] = (unsigned char)byte;
    }
    if (n == 0)
        return -1;
    seed.entropy_count = n * 8;
    seed.buf_size = n;
    fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ioctl(fd, RNDADDENTROPY, &seed) < 0) {
        say("could not credit the entropy seed: %s", strerror(errno));
        ok = -1;
    } else if (reseed && ioctl(fd, RNDRESEEDCRNG) < 0) {
        say("could not reseed the CRNG: %s", strerror(errno));
        ok = -1;
    }
    if (fd >= 0)
        close(fd);
    memset(&seed, 0, sizeof seed);
    return ok;
}

static void seed_entropy(void) {
    char hexbuf[160], probe;
    if (cmdline_param("kiln.seed", hexbuf, sizeof hexbuf))
        credit_seed(hexbuf, 0);
    memset(hexbuf, 0, sizeof hexbuf);
    if (getrandom(&probe, 1, GRND_NONBLOCK) < 0)
        say("random pool not ready yet (%s); getrandom() may block", strerror(errno));
}

/* ---- sandbox (unix target) ---------------------------------------------- */

static void bind_dev(const char *name) {
    char src[64], dst[64];
    int fd;
    snprintf(src, sizeof src, "/dev/%s", name);
    snprintf(dst, sizeof dst, "dev/%s", name);
    fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
    if (fd >= 0)
        close(fd);
    mount_fs(src, dst, NULL, MS_BIND, NULL);
}

/* `--env KEY=VALUE` arguments of the sandbox (kiln build --check): added to the app's environment,
 * replacing a variable of the same name from the config. */

static void add_sandbox_env(void) {
    int i, j, n = 0;
    while (app_envp[n])
        n++;
    for (i = 0; i < nsandbox_env; i++) {
        size_t key = strchr(sandbox_env[i], '=') - sandbox_env[i] + 1;
        for (j = 0; j < n && strncmp(app_envp[j], sandbox_env[i], key); j++)
            ;
        if (j < n)
            app_envp[j] = sandbox_env[i];
        else if (n < MAX_ITEMS)
            app_envp[n++] = sandbox_env[i];
    }
}

/* `--volume HOST=GUEST` arguments of the sandbox, bound before the pivot. */
static char *sandbox_volumes[16];
static int nsandbox_volumes;
static const char *bound_volumes[16]; /* guest paths bound from the host */
static int nbound_volumes;

static void enter_sandbox(const char *root) {
    static const char *devs[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};
    int i;
    must(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "make mounts private");
    must(mount(root, root, NULL, MS_BIND | MS_REC, NULL) == 0, "bind the root");
    must(mount(NULL, root, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) == 0,
         "make the root read-only");
    must(chdir(root) == 0, "enter the root");
    mount_fs("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_fs("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m");
    mount_fs("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k");
    for (i = 0; devs[i]; i++)
        bind_dev(devs[i]);
    mount_fs(NULL, "dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL);
    for (i = 0; i < nsandbox_volumes; i++) {
        char *host = sandbox_volumes[i], *guest = strchr(host, '=');
        if (!guest || guest[1] != '/')
            continue;
        *guest++ = '\0';
        if (mount(host, guest + 1, NULL, MS_BIND | MS_REC, NULL) < 0 ||
            mount(NULL, guest + 1, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL) < 0)
            say("volume %s: cannot bind %s: %s", guest, host, strerror(errno));
        else
            bound_volumes[nbound_volumes++] = guest;
    }
    must(syscall(SYS_pivot_root, ".", ".") == 0, "pivot into the root");
    must(umount2(".", MNT_DETACH) == 0, "detach the host's root");
    must(chdir("/") == 0, "chdir /");
}

/* Keep only CAP_NET_BIND_SERVICE, in every set, for good. */
static void drop_capabilities(void) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    int cap;
    for (cap = 0; cap <= CAP_LAST_CAP; cap++)
        if (cap != CAP_NET_BIND_SERVICE)
            prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    memset(data, 0, sizeof data);
    data[0].effective = data[0].permitted = 1u << CAP_NET_BIND_SERVICE;
    must(syscall(SYS_capset, &hdr, data) == 0, "drop capabilities");
    must(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "set no_new_privs");
}

/* ---- volumes -------------------------------------------------------------- */

static int bound_by_sandbox(const char *path) {
    int i;
    for (i = 0; i < nbound_volumes; i++)
        if (!strcmp(bound_volumes[i], path))
            return 1;
    return 0;
}

static void mount_volumes(void) {
    int i;
    for (i = 0; i < nvolumes; i++) {
        struct volume *v = &volumes[i];
        if (bound_by_sandbox(v->path))
            continue;
        if (!sandboxed &&
            mount(v->tag, v->path, "9p", MS_NOSUID | MS_NODEV, "trans=virtio,version=9p2000.L,msize=262144") == 0)
            continue;
        if (mount("tmpfs", v->path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") == 0)
            say("volume %s: no host directory given, using a temporary one", v->path);
        else
            say("volume %s: %s", v->path, strerror(errno));
    }
}

/* ---- the syscall policy --------------------------------------------------- */

#define ADD(insn)                                                                                                  \
    do {                                                                                                           \
        if (n >= (int)(sizeof prog / sizeof prog[0]))                                                              \
            return -1;                                                                                             \
        prog[n++] = (struct sock_filter)insn;                                                                      \
    } while (0)

/* Install the filter in the calling process; return the notification listener fd. */
static int install_policy(void) {
    struct sock_filter prog[300];
    struct sock_fprog fprog;
    int n = 0, i;

    ADD(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    ADD(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
    ADD(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    ADD(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
    ADD(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1)); /* the x32 ABI: not for us */
    ADD(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS));
    for (i = 0; i < nrules; i++) {
        struct rule *r = &rules[i];
        if (r->action == NOTIFY_UNLESS_THREAD) {
            ADD(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, r->nr, 0, 4));
            ADD(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])));
            ADD(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1));
            ADD(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
            ADD(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF));
        } else {
            ADD(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, r->nr, 0, 1));
            ADD(BPF_STMT(BPF_RET | BPF_K, r->action == ENOSYS_ ? SECCOMP_RET_ERRNO | ENOSYS : SECCOMP_RET_USER_NOTIF));
        }
    }
    ADD(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    fprog.len = (unsigned short)n;
    fprog.filter = prog;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
}

static const char *rule_name(int nr) {
    int i;
    for (i = 0; i < nrules; i++)
        if (rules[i].nr == nr)
            return rules[i].action == NOTIFY_UNLESS_THREAD ? "clone (a new process)" : rules[i].name;
    return "?";
}

/* ---- the control channel (VM only) ------------------------------------------ */

static int wake_pipe[2] = {-1, -1};
static int ctl_fd = -1;
static int waiting_seed;   /* kiln.wait-seed: the app starts after the host's seed */
static char ctl_in[4096];
static size_t ctl_len;
static struct timespec boot_time;

static void wake(int sig) {
    (void)sig;
    if (write(wake_pipe[1], "w", 1) < 0) {
        /* the pipe is full: init is awake already */
    }
}

static void open_control(void) {
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

static char ctl_tag[24]; /* the tag of the request being answered ("@N "), or "" */
static volatile pid_t app_pid; /* the app, once started (0 before) */

static void reply(const char *fmt, ...) {
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
static int listening_on(unsigned port) {
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
static void kib_fields(const char *path, const char *const *keys, char *out, size_t size) {
    char line[256];
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char key[64];
        unsigned long kib;
        int i;
        if (sscanf(line, "%63[^:]: %lu", key, &kib) != 2)
            continue;
        for (i = 0; keys[i]; i++)
            if (!strcmp(key, keys[i])) {
                size_t len = strlen(out);
                snprintf(out + len, size - len, " %s=%lu", key, kib);
            }
    }
    fclose(f);
}

static void meminfo(void) {
    static const char *const system[] = {"MemTotal", "MemFree", "MemAvailable", "Cached", "Shmem", "AnonPages",
                                         "Slab", "KernelStack", "PageTables", NULL};
    static const char *const app[] = {"VmRSS", "RssAnon", "RssFile", NULL};
    char out[400] = "", path[64];
    kib_fields("/proc/meminfo", system, out, sizeof out);
    if (app_pid > 0) {
        snprintf(path, sizeof path, "/proc/%d/status", (int)app_pid);
        kib_fields(path, app, out, sizeof out);
    }
    reply("ok meminfo%s", out);
}

/* One "Key:  N" field of a /proc file (kB for memory), or 0. */
static unsigned long proc_field(const char *path, const char *key) {
    char line[256];
    unsigned long value = 0;
    size_t klen = strlen(key);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, klen) && (line[klen] == ':' || line[klen] == ' ')) {
            sscanf(line + klen + 1, " %lu", &value);
            break;
        }
    fclose(f);
    return value;
}

static unsigned long app_peak_kib;   /* the app's VmHWM, sampled while it runs (kept once it is gone) */
static unsigned long oom_kills_at_start; /* /proc/vmstat's oom_kill (kernels with VM event counters) */
static int kmsg_fd = -1;                 /* the kernel's log, from the app's start (a guest's kernel has no
                                            event counters: its OOM killer is read from its log) */

/* Whether the kernel's log, since the app started, says the OOM killer killed it. */
static int oom_killed_in_log(void) {
    char record[1024], needle[48];
    ssize_t n;
    int found = 0;
    if (kmsg_fd < 0)
        return 0;
    snprintf(needle, sizeof needle, "Killed process %d ", (int)app_pid);
    for (;;) {
        n = read(kmsg_fd, record, sizeof record - 1);
        if (n < 0 && errno == EPIPE)
            continue; /* records overwritten while we were away: go on with the next */
        if (n <= 0)
            break;
        record[n] = '\0';
        if (strstr(record, needle)) {
            /* "... anon-rss:16660kB, file-rss:4kB, shmem-rss:0kB ...": what the app held when killed */
            char *rss = strstr(record, "anon-rss:");
            unsigned long anon = 0, file = 0, shmem = 0;
            found = 1;
            if (rss && sscanf(rss, "anon-rss:%lukB, file-rss:%lukB, shmem-rss:%lukB", &anon, &file, &shmem) >= 1 &&
                anon + file + shmem > app_peak_kib)
                app_peak_kib = anon + file + shmem;
        }
    }
    return found;
}

static void sample_app(void) {
    char path[64];
    unsigned long hwm;
    if (app_pid <= 0)
        return;
    snprintf(path, sizeof path, "/proc/%d/status", (int)app_pid);
    hwm = proc_field(path, "VmHWM");
    if (hwm > app_peak_kib)
        app_peak_kib = hwm;
}

/* The app's threads: "TID:STATE:NAME" each, from /proc/APP/task/TID/stat. */
static void threads(void) {
    char path[64], line[512], out[400] = "";
    DIR *d;
    struct dirent *e;
    snprintf(path, sizeof path, "/proc/%d/task", (int)app_pid);
    if (app_pid <= 0 || !(d = opendir(path))) {
        reply("no threads the app is not running");
        return;
    }
    while ((e = readdir(d))) {
        char stat[400], *open_paren, *close_paren, *c;
        FILE *f;
        if (e->d_name[0] == '.')
            continue;
        snprintf(stat, sizeof stat, "%s/%s/stat", path, e->d_name);
        if (!(f = fopen(stat, "r")))
            continue;
        if (fgets(line, sizeof line, f) && (open_paren = strchr(line, '(')) && (close_paren = strrchr(line, ')'))) {
            size_t len = strlen(out);
            *close_paren = '\0';
            for (c = open_paren + 1; *c; c++)
                if (*c == ' ' || *c == ':')
                    *c = '_';
            snprintf(out + len, sizeof out - len, " %s:%c:%s", e->d_name, close_paren[2], open_paren + 1);
        }
        fclose(f);
    }
    closedir(d);
    reply("ok threads%s", out);
}

/* TCP sockets by state, from /proc/net/tcp{,6}: listen, established, time-wait, other. */
static void tcp_states(unsigned long counts[4]) {
    static const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    char line[512];
    int t;
    for (t = 0; t < 2; t++) {
        FILE *f = fopen(tables[t], "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f)) {
            unsigned st;
            if (sscanf(line, " %*d: %*s %*s %x", &st) != 1)
                continue;
            counts[st == 0x0A ? 0 : st == 0x01 ? 1 : st == 0x06 ? 2 : 3]++;
        }
        fclose(f);
    }
}

#define GC_FILE "/tmp/.kiln-gc"
#define GC_SIGNAL (SIGRTMIN + 3) /* kiln/guest/start.py: GC_SIGNAL_OFFSET */

/* Whether process `pid` has a handler for signal `sig` (its SigCgt mask in /proc/PID/status, hex). */
static int catches(pid_t pid, int sig) {
    char path[64], line[256];
    unsigned long long mask = 0;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r")))
        return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "SigCgt:", 7)) {
            sscanf(line + 7, " %llx", &mask);
            break;
        }
    fclose(f);
    return sig >= 1 && sig <= 64 && (mask >> (sig - 1)) & 1;
}

/* A Python app's gc figures, as " KEY=N..." in out (empty for a native app): when the app catches
 * GC_SIGNAL (kiln's start-up hook's handler, seen in SigCgt: an uncaught real-time signal would kill
 * it), init sends it and waits up to 200 ms for the hook's new GC_FILE; the app wrote the file, so
 * only [a-z0-9_= ] pass. */
static void gc_figures(char *out, size_t size) {
    struct stat before = {0}, now;
    struct timespec pause = {0, 5000000};
    char line[200], *c;
    FILE *f;
    int i;
    out[0] = '\0';
    if (app_pid <= 0 || !catches(app_pid, GC_SIGNAL))
        return;
    stat(GC_FILE, &before); /* none before the first request */
    if (kill(app_pid, GC_SIGNAL) == 0)
        for (i = 0; i < 40; i++) {
            nanosleep(&pause, NULL);
            if (stat(GC_FILE, &now) == 0 && (now.st_ino != before.st_ino || now.st_mtim.tv_nsec != before.st_mtim.tv_nsec))
                break;
        }
    if (!(f = fopen(GC_FILE, "r")))
        return;
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        for (c = line; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '=' || *c == ' '))
                break;
        if (!*c && line[0])
            snprintf(out, size, " %s", line);
    }
    fclose(f);
}

static void stats(void) {
    char path[64], line[512], gc[256];
    unsigned long tcp[4] = {0, 0, 0, 0}, utime = 0, stime = 0, total = 0, v;
    unsigned long rss = 0, threads = 0, fds = 0;
    struct timespec now;
    FILE *f;
    DIR *d;
    struct dirent *e;
    int i;
    sample_app();
    if (app_pid > 0) {
        snprintf(path, sizeof path, "/proc/%d/status", (int)app_pid);
        rss = proc_field(path, "VmRSS");
        threads = proc_field(path, "Threads");
        snprintf(path, sizeof path, "/proc/%d/stat", (int)app_pid);
        if ((f = fopen(path, "r"))) {
            if (fgets(line, sizeof line, f)) {
                char *rest = strrchr(line, ')');
                if (rest)
                    sscanf(rest + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
            }
            fclose(f);
        }
        snprintf(path, sizeof path, "/proc/%d/fd", (int)app_pid);
        if ((d = opendir(path))) {
            while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                    fds++;
            closedir(d);
        }
    }
    if ((f = fopen("/proc/stat", "r"))) {
        if (fgets(line, sizeof line, f)) {
            char *p = line + 3;
            for (i = 0; i < 8 && sscanf(p, " %lu", &v) == 1; i++) {
                total += v;
                while (*p == ' ')
                    p++;
                while (*p && *p != ' ')
                    p++;
            }
        }
        fclose(f);
    }
    tcp_states(tcp);
    gc_figures(gc, sizeof gc);
    clock_gettime(CLOCK_MONOTONIC, &now);
    reply("ok stats mem_total_kib=%lu mem_available_kib=%lu app_rss_kib=%lu app_peak_kib=%lu app_threads=%lu "
          "app_fds=%lu app_cpu_ticks=%lu cpu_ticks=%lu hz=%ld tcp_listen=%lu tcp_established=%lu "
          "tcp_time_wait=%lu tcp_other=%lu uptime_ms=%ld%s",
          proc_field("/proc/meminfo", "MemTotal"), proc_field("/proc/meminfo", "MemAvailable"), rss, app_peak_kib,
          threads, fds, utime + stime, total, sysconf(_SC_CLK_TCK), tcp[0], tcp[1], tcp[2], tcp[3],
          (long)((now.tv_sec - boot_time.tv_sec) * 1000 + (now.tv_nsec - boot_time.tv_nsec) / 1000000), gc);
}

/* After the app ended with `status` (128+signal when killed): one line that says why, if kiln knows.
 * The OOM killer's work shows in /proc/vmstat's oom_kill counter. */
static void explain_end(int status) {
    char mem[16];
    unsigned long guest = cmdline_param("kiln.memory", mem, sizeof mem) ? strtoul(mem, NULL, 10) : 0;
    int oom = status == 128 + SIGKILL &&
              (oom_killed_in_log() || proc_field("/proc/vmstat", "oom_kill") > oom_kills_at_start);
    unsigned long peak = (app_peak_kib + 1023) / 1024; /* after the log: the kill record says what it held */
    if (oom) {
        if (guest)
            say("the app ran out of memory: %lu MiB guest, the app used %lu MiB at its peak; try --memory %luM",
                guest, peak, guest * 2);
        else
            say("the app ran out of memory: the app used %lu MiB at its peak", peak);
    } else if (status > 128 && status < 128 + 65) {
        say("the app was killed by signal %d (%s)", status - 128, strsignal(status - 128));
    }
}

/* GET path from 127.0.0.1:port inside the guest: the HTTP status, or -1 (errno says why). */
static int http_status(unsigned port, const char *path) {
    struct sockaddr_in addr;
    struct timeval limit = {2, 0};
    char head[64];
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = -1;
    if (fd < 0)
        return -1;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        dprintf(fd, "GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n", path) > 0 &&
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

static void request(char *line) {
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
    } else
        reply("err %s unknown request", verb);
}

/* Read what the host sent and answer every complete line. */
static void serve_control(short revents) {
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
static int control_pollfd(struct pollfd *fd) {
    if (ctl_fd < 0)
        return 0;
    fd->fd = ctl_fd;
    fd->events = POLLIN;
    fd->revents = 0;
    return 1;
}

/* kiln.wait-seed (a snapshot made "after kernel"): answer the host until it has sent the seed. */
static void wait_for_seed(void) {
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

/* ---- the app ------------------------------------------------------------- */

static int app_started;

static void forward_signal(int sig) {
    if (app_pid > 0)
        kill(app_pid, sig);
}

static void answer(int listener) {
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    memset(&req, 0, sizeof req);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
        return;
    memset(&resp, 0, sizeof resp);
    resp.id = req.id;
    if (!app_started && req.pid == (unsigned)app_pid && req.data.nr == SYS_execve) {
        app_started = 1; /* the app itself starting */
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    } else {
        resp.error = -EPERM;
        say("refused %s by pid %u: not allowed by the syscall policy (see [seccomp] in kiln.toml)",
            rule_name(req.data.nr), req.pid);
    }
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT)
        say("seccomp answer: %s", strerror(errno));
}

/* The app's process: seal it with the policy, hand the listener to init, start the app. */
static void become_app(int report_fd) {
    int listener = -1;
    if (chdir(workdir) < 0)
        say("workdir %s: %s", workdir, strerror(errno));
    setsid();
    if (sandboxed)
        drop_capabilities();
    if (nrules > 0) {
        listener = install_policy();
        if (listener < 0) {
            say("cannot install the syscall policy: %s", strerror(errno));
            _exit(126);
        }
    }
    /* init shares this fd table (CLONE_FILES) until execve: the number is enough */
    if (write(report_fd, &listener, sizeof listener) != sizeof listener)
        _exit(126);
    execve(app_argv[0], app_argv, app_envp);
    say("cannot run %s: %s", app_argv[0], strerror(errno));
    _exit(127);
}

static int run_app(void) {
    int status = 0, listener = -1, report[2];
    struct sigaction sa;

    must(pipe2(report, O_CLOEXEC) == 0, "create a pipe");
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = wake;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    sa.sa_handler = forward_signal;
    sa.sa_flags = 0;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL); /* kiln stack on the unix target: the host signals init */

    oom_kills_at_start = proc_field("/proc/vmstat", "oom_kill");
    kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (kmsg_fd >= 0)
        lseek(kmsg_fd, 0, SEEK_END);
    app_pid = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
    must(app_pid >= 0, "start the app");
    if (app_pid == 0)
        become_app(report[1]);
    if (read(report[0], &listener, sizeof listener) != sizeof listener)
        listener = -1; /* the app's process ended before it could start the app */

    /* Answer the policy's questions and the host's, reap every orphan, stop when the app has ended. */
    for (;;) {
        struct pollfd fds[3] = {{wake_pipe[0], POLLIN, 0}, {listener, POLLIN, 0}};
        int st, done = 0, nfds = listener >= 0 ? 2 : 1, ctl = 0;
        pid_t pid;
        char drain[64];
        if (control_pollfd(&fds[nfds]))
            ctl = nfds++;
        if (poll(fds, nfds, 500) < 0 && errno != EINTR)
            break;
        sample_app(); /* the app's peak memory, for the report if memory runs out */
        if (ctl)
            serve_control(fds[ctl].revents);
        if (listener >= 0 && (fds[1].revents & POLLIN))
            answer(listener);
        else if (listener >= 0 && (fds[1].revents & (POLLHUP | POLLERR | POLLNVAL))) {
            close(listener);
            listener = -1;
        }
        while (read(wake_pipe[0], drain, sizeof drain) > 0)
            ;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
            if (pid == app_pid) {
                status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                done = 1;
            }
        if (done)
            break;
    }
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0)
        ;
    explain_end(status);
    return status;
}

static void power_off(int status) {
    sync();
    if (ioperm(DEBUG_EXIT_PORT, 1, 1) == 0)
        outb(status < 127 ? status : 127, DEBUG_EXIT_PORT);
    /* No isa-debug-exit device: reboot, which QEMU's -no-reboot turns into an exit. */
    reboot(RB_AUTOBOOT);
    for (;;)
        pause();
}

int main(int argc, char **argv) {
    int status;
    char flag[8];

    clock_gettime(CLOCK_MONOTONIC, &boot_time);
    must(pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) == 0, "create a pipe");

    if (argc >= 3 && !strcmp(argv[1], "--sandbox")) {
        int i;
        for (i = 3; i + 1 < argc; i += 2) {
            if (!strcmp(argv[i], "--volume") && nsandbox_volumes < 16)
                sandbox_volumes[nsandbox_volumes++] = argv[i + 1];
            else if (!strcmp(argv[i], "--env") && nsandbox_env < 32 && strchr(argv[i + 1], '='))
                sandbox_env[nsandbox_env++] = argv[i + 1];
        }
        sandboxed = 1;
        enter_sandbox(argv[2]);
    } else if (getpid() != 1) {
        say("usage: init (as PID 1 of a kiln VM) | init --sandbox ROOT [--volume HOST=GUEST] [--env KEY=VALUE]...");
        return 2;
    } else {
        mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755");
        mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
        mount_fs("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
        if (cmdline_param("kiln.probe", flag, sizeof flag)) {
            say("probe ok");
            power_off(0);
        }
        setup_network();
        add_hosts();
        env_from_cmdline();
        seed_entropy();
        open_control();
        if (cmdline_param("kiln.wait-seed", flag, sizeof flag))
            wait_for_seed();
    }
    load_config(CONFIG_PATH);
    add_sandbox_env();
    mount_volumes();
    if (sethostname(hostname, strlen(hostname)) < 0)
        say("hostname: %s", strerror(errno));
    status = run_app();
    say("exit status %d", status);
    if (sandboxed)
        return status;
    power_off(status);
    return status;
}
