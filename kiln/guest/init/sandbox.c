/* kiln guest init: the sandbox (unix target): the root, its mounts, capabilities. */
#include "init.h"

/* ---- sandbox (unix target) ---------------------------------------------- */

void bind_dev(const char *name) {
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

void add_sandbox_env(void) {
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
char *sandbox_volumes[16];
int nsandbox_volumes;
const char *bound_volumes[16]; /* guest paths bound from the host */
int bound_below_fds[16];       /* the image's directory each covers (firststart.c fills an empty one from it) */
int nbound_volumes;

void enter_sandbox(const char *root) {
    static const char *devs[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};
    int i, below;
    must(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "make mounts private");
    must(mount(root, root, NULL, MS_BIND | MS_REC, NULL) == 0, "bind the root");
    must(mount(NULL, root, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) == 0,
         "make the root read-only");
    must(chdir(root) == 0, "enter the root");
    mount_fs("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    /* the host's sysctls stay the host's: /proc/sys read-only, as container runtimes mount it */
    mount_fs("proc/sys", "proc/sys", NULL, MS_BIND, NULL);
    mount_fs(NULL, "proc/sys", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_fs("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m");
    mount_fs("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k");
    for (i = 0; devs[i]; i++)
        bind_dev(devs[i]);
    must(mkdir("dev/shm", 01777) == 0 || errno == EEXIST, "make dev/shm");
    std_links("dev");
    mount_fs(NULL, "dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL);
    mount_fs("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, SHM_OPTIONS);
    for (i = 0; i < nsandbox_volumes; i++) {
        char *host = sandbox_volumes[i], *guest = strchr(host, '=');
        if (!guest || guest[1] != '/')
            continue;
        *guest++ = '\0';
        below = open(guest + 1, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (mount(host, guest + 1, NULL, MS_BIND | MS_REC, NULL) < 0 ||
            mount(NULL, guest + 1, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL) < 0) {
            say("volume %s: cannot bind %s: %s", guest, host, strerror(errno));
            if (below >= 0)
                close(below);
        } else {
            bound_below_fds[nbound_volumes] = below;
            bound_volumes[nbound_volumes++] = guest;
        }
    }
    must(syscall(SYS_pivot_root, ".", ".") == 0, "pivot into the root");
    must(umount2(".", MNT_DETACH) == 0, "detach the host's root");
    must(chdir("/") == 0, "chdir /");
}
