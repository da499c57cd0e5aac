/* kiln guest init: the syscall policy: a seccomp filter whose refusals come to init. */
#include "init.h"

/* ---- the syscall policy --------------------------------------------------- */

#define ADD(insn)                                                                                                  \
    do {                                                                                                           \
        if (n >= (int)(sizeof prog / sizeof prog[0]))                                                              \
            return -1;                                                                                             \
        prog[n++] = (struct sock_filter)insn;                                                                      \
    } while (0)

/* Install the filter in the calling process; return the notification listener fd. */
int install_policy(void) {
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

const char *rule_name(int nr) {
    int i;
    for (i = 0; i < nrules; i++)
        if (rules[i].nr == nr)
            return rules[i].action == NOTIFY_UNLESS_THREAD ? "clone (a new process)" : rules[i].name;
    return "?";
}

/* ---- programs the image names, that the app may execute ----------------------------------------------------- */

/* "exec PATH" in /kiln/config: a program of the sealed image the server starts itself (Erlang's
 * erl_child_setup and inet_gethost). Its execve, by any of the app's processes, is let through when the path the
 * call names is exactly one of these; any other is refused and named. The image is read-only and, where helpers
 * are named, every writable mount is noexec (noexec_writable): nothing written at run time can be executed even
 * by a path changed after init read it (seccomp's user notification re-reads it when the call goes on). */
char *helpers[16];
int nhelpers;

void add_helper(const char *path) {
    if (nhelpers < (int)(sizeof helpers / sizeof helpers[0]) && path[0] == '/')
        helpers[nhelpers++] = strdup(path);
}

static int has_option(const char *opts, const char *name) {
    size_t n = strlen(name);
    const char *at = opts;
    while ((at = strstr(at, name)) != NULL) {
        if ((at == opts || at[-1] == ',') && (at[n] == ',' || at[n] == '\0'))
            return 1;
        at += n;
    }
    return 0;
}

/* Every writable mount made noexec, once all are in place (/tmp, volumes, writable directories; /dev/shm is). */
void noexec_writable(void) {
    FILE *f = fopen("/proc/self/mounts", "r");
    char line[4096], where[4096], opts[1024];
    unsigned long flags;
    if (!f) {
        say("noexec: /proc/self/mounts: %s", strerror(errno));
        return;
    }
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%*s %4095s %*s %1023s", where, opts) != 2)
            continue;
        if (has_option(opts, "ro"))
            continue;
        if (has_option(opts, "noexec") || !strncmp(where, "/proc", 5) || !strncmp(where, "/sys", 4) ||
            !strncmp(where, "/dev", 4))
            continue; /* devices (the sandbox's /dev/null is a bind of the host's) stay as they are */
        flags = MS_REMOUNT | MS_BIND | MS_NOEXEC; /* the mount's own flags kept: a bind remount sets them all */
        flags |= has_option(opts, "nosuid") ? MS_NOSUID : 0;
        flags |= has_option(opts, "nodev") ? MS_NODEV : 0;
        flags |= has_option(opts, "noatime") ? MS_NOATIME : has_option(opts, "relatime") ? MS_RELATIME : 0;
        if (mount(NULL, where, NULL, flags, NULL) < 0)
            say("noexec %s: %s", where, strerror(errno));
    }
    fclose(f);
}

/* The path an execve names, read from the caller's memory (up to the end of its page first: the rest may be
 * unmapped). 0 when it cannot be read, or the call is no longer pending. */
int execve_path(int listener, const struct seccomp_notif *req, char *out, size_t outlen) {
    char mem[64];
    unsigned long long at = req->data.args[0];
    size_t got = 0, first = 4096 - (size_t)(at % 4096);
    int fd;
    ssize_t n;
    snprintf(mem, sizeof mem, "/proc/%u/mem", req->pid);
    out[0] = '\0';
    fd = open(mem, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    while (got < outlen - 1) {
        size_t want = got == 0 && first < outlen - 1 ? first : outlen - 1 - got;
        n = pread(fd, out + got, want, (off_t)(at + got));
        if (n <= 0)
            break;
        got += (size_t)n;
        if (memchr(out, '\0', got))
            break;
    }
    close(fd);
    if (got == 0 || !memchr(out, '\0', got)) {
        out[0] = '\0';
        return 0;
    }
    /* the pid could have ended and been reused while we read: the call must still be the one pending */
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) == 0;
}

int is_helper(const char *path) {
    int i;
    for (i = 0; i < nhelpers; i++)
        if (!strcmp(path, helpers[i]))
            return 1;
    return 0;
}
