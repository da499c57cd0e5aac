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
