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
 * kiln.poweroff ends the VM by powering off, not by a reboot (a firmware-booted disk);
 * kiln.ip1=IP/PREFIX configures eth1 (a compose project's private network),
 * kiln.secrets=HEX names a compose service's secrets (secrets.c), kiln.binds=HEX
 * host files bound over the image's (binds.c), and
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
 *
 * The code is split by concern, one file each: main.c (config, the app, main), net.c, entropy.c,
 * sandbox.c, volumes.c, firststart.c, policy.c, control.c and stats.c; init.h holds what they share.
 */
#include "init.h"


char *app_argv[MAX_ITEMS + 1];
char *app_envp[MAX_ITEMS + 1];
char **run_argv = app_argv; /* what run_app starts: the app, or a first start's setup (firststart.c) */
int run_input = -1;         /* and the standard input it gets (-1: init's) */
char workdir[4096] = "/";
char hostname[256] = "kiln";
int sandboxed;

struct volume volumes[16];
int nvolumes;

struct rule rules[64];
int nrules;

void say(const char *fmt, ...) {
    va_list ap;
    char buf[1024];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    dprintf(2, "kiln-init: %s\n", buf);
}

void must(int ok, const char *what) {
    if (!ok) {
        say("%s: %s", what, strerror(errno));
        _exit(125);
    }
}

void load_config(const char *path) {
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
        else if (!strcmp(line, "setup-step") || !strcmp(line, "setup-arg") || !strcmp(line, "setup-input") ||
                 !strcmp(line, "setup-file") || !strcmp(line, "setup-append"))
            setup_line(line, value);
        else if (!strcmp(line, "exec"))
            add_helper(value);
        else if (!strcmp(line, "workdir"))
            snprintf(workdir, sizeof workdir, "%s", value);
        else if (!strcmp(line, "hostname"))
            snprintf(hostname, sizeof hostname, "%s", value);
        else if (!strcmp(line, "volume") && nvolumes < 16) {
            struct volume *v = &volumes[nvolumes];
            if (sscanf(value, "%31s %255s", v->tag, v->path) == 2)
                nvolumes++;
        } else if (!strcmp(line, "user"))
            parse_user(value);
        else if (!strcmp(line, "caps"))
            parse_caps(value);
        else if (!strcmp(line, "tmpfs") && ntmpfs < 16) {
            struct writable *w = &tmpfs_dirs[ntmpfs];
            if (sscanf(value, "%255s %u %u %o", w->path, &w->uid, &w->gid, &w->mode) == 4)
                ntmpfs++;
        } else if (!strcmp(line, "owner") && nowners < 16) {
            struct writable *w = &owners[nowners];
            if (sscanf(value, "%255s %u %u %o", w->path, &w->uid, &w->gid, &w->mode) == 4)
                nowners++;
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

/* The app's argv instead of the image's (kiln run IMAGE ARGS): --arg WORD in the sandbox, kiln.argv=HEX
 * (one word a line) in the VM. */
static char argv_text[2048];
void argv_override(void) {
    static char hex[4096];
    char *line, *save = NULL;
    int argc = 0;
    if (nsandbox_args > 0) {
        for (argc = 0; argc < nsandbox_args && argc < MAX_ITEMS; argc++)
            app_argv[argc] = sandbox_args[argc];
    } else if (!sandboxed && cmdline_param("kiln.argv", hex, sizeof hex) && unhex(hex, argv_text, sizeof argv_text) > 0) {
        for (line = strtok_r(argv_text, "\n", &save); line && argc < MAX_ITEMS; line = strtok_r(NULL, "\n", &save))
            app_argv[argc++] = line;
    } else
        return;
    app_argv[argc] = NULL;
}

/* Copy the value of "key[=value]" on the kernel command line into out; NULL if absent. */
char *cmdline_param(const char *key, char *out, size_t outlen) {
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

/* The links every container's /dev has (runc makes them): official images log to /dev/stdout and /dev/stderr. */
void std_links(const char *dev) {
    static const char *const links[][2] = {
        {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}};
    char path[64];
    size_t i;
    for (i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, links[i][0]);
        if (symlink(links[i][1], path) < 0 && errno != EEXIST)
            say("%s: %s", path, strerror(errno));
    }
}

void mount_fs(const char *src, const char *dst, const char *type, unsigned long flags,
                     const char *data) {
    if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
        say("mount %s on %s: %s", type ? type : src, dst, strerror(errno));
}

char *sandbox_env[32]; /* KEY=VALUE over the image's environment: --env, kiln.env */
int nsandbox_env;
char *sandbox_args[MAX_ITEMS]; /* --arg WORD: the app's argv instead of the image's */
int nsandbox_args;

/* ---- the app ------------------------------------------------------------- */

int app_started;

void forward_signal(int sig) {
    if (app_pid > 0)
        kill(app_pid, sig);
}

void answer(int listener) {
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
    } else if (req.data.nr == SYS_execve && nhelpers > 0) {
        char path[4096] = "";
        if (execve_path(listener, &req, path, sizeof path) && is_helper(path))
            resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE; /* a program the image names (policy.c) */
        else {
            resp.error = -EPERM;
            say("refused execve of %s by pid %u: not a program the image names (exec in kiln inspect --surface)",
                path[0] ? path : "?", req.pid);
        }
    } else {
        resp.error = -EPERM;
        say("refused %s by pid %u: not allowed by the syscall policy (see [seccomp] in kiln.toml)",
            rule_name(req.data.nr), req.pid);
    }
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT)
        say("seccomp answer: %s", strerror(errno));
}

/* The app's process: seal it with the policy, hand the listener to init, start the app. */
void become_app(int report_fd) {
    int listener = -1;
    if (chdir(workdir) < 0)
        say("workdir %s: %s", workdir, strerror(errno));
    setsid();
    if (sandboxed)
        drop_capabilities();
    become_user();
    if (nrules > 0) {
        listener = install_policy();
        if (listener < 0) {
            say("cannot install the syscall policy: %s", strerror(errno));
            _exit(126);
        }
    }
    if (run_input >= 0 && dup2(run_input, 0) < 0)
        _exit(126);
    /* init shares this fd table (CLONE_FILES) until execve: the number is enough */
    if (write(report_fd, &listener, sizeof listener) != sizeof listener)
        _exit(126);
    execve(run_argv[0], run_argv, app_envp);
    say("cannot run %s: %s", run_argv[0], strerror(errno));
    _exit(127);
}

int run_app(void) {
    int status = 0, listener = -1, report[2];
    struct sigaction sa;

    must(pipe2(report, O_CLOEXEC) == 0, "create a pipe");
    app_started = 0;
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
    sigaction(SIGQUIT, &sa, NULL); /* stop signals images name (nginx's SIGQUIT), on the unix target */
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGWINCH, &sa, NULL);

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

void power_off(int status) {
    sync();
    if (ioperm(DEBUG_EXIT_PORT, 1, 1) == 0)
        outb(status < 127 ? status : 127, DEBUG_EXIT_PORT);
    /* No isa-debug-exit device: reboot, which QEMU's -no-reboot turns into an exit; on a firmware-booted
     * disk (kiln.poweroff, kiln export disk) power off, as a cloud's VM stops when its program ends. */
    char off[4];
    reboot(cmdline_param("kiln.poweroff", off, sizeof off) ? RB_POWER_OFF : RB_AUTOBOOT);
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
            else if (!strcmp(argv[i], "--arg") && nsandbox_args < MAX_ITEMS)
                sandbox_args[nsandbox_args++] = argv[i + 1];
        }
        sandboxed = 1;
        enter_sandbox(argv[2]);
    } else if (getpid() != 1) {
        say("usage: init (as PID 1 of a kiln VM) | init --sandbox ROOT [--volume HOST=GUEST] [--env KEY=VALUE] "
            "[--arg WORD]...");
        return 2;
    } else {
        mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755");
        std_links("/dev");
        /* POSIX shared memory and semaphores (multiprocessing's locks, PostgreSQL): 64 MiB, as Docker gives */
        mkdir("/dev/shm", 01777);
        mount_fs("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, SHM_OPTIONS);
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
    argv_override();
    add_sandbox_env();
    /* secrets first: a first start reads NAME_FILE when a volume is filled; and a /run made a tmpfs for them is
     * where the writable directories go too */
    if (mount_secrets() < 0 || mount_volumes() < 0)
        status = 125;
    else if (mount_writable(), bind_mounts() < 0) /* over the image's files, and into its writable directories */
        status = 125;
    else {
        if (nhelpers > 0)
            noexec_writable();
        if (sethostname(hostname, strlen(hostname)) < 0)
            say("hostname: %s", strerror(errno));
        /* the forwarder after the first start's steps (each ends every process but init), before the app */
        if (run_setup() < 0)
            status = 125;
        else {
            if (!sandboxed)
                start_clients();
            status = run_app();
        }
    }
    say("exit status %d", status);
    if (sandboxed)
        return status;
    power_off(status);
    return status;
}
