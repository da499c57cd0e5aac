/* kiln guest init: volumes (9p shares in the VM, host directories in the sandbox, tmpfs otherwise), the
 * writable directories a service needs ("tmpfs PATH UID GID MODE": /run, its logs and caches), and who
 * owns them ("owner PATH UID GID MODE": a volume the app writes to as its own account). */
#include "init.h"

struct writable tmpfs_dirs[16];
int ntmpfs;
struct writable owners[16];
int nowners;

int bound_by_sandbox(const char *path) {
    int i;
    for (i = 0; i < nbound_volumes; i++)
        if (!strcmp(bound_volumes[i], path))
            return 1;
    return 0;
}

/* Does the VM have a 9p device with this mount tag (a host directory given for the volume)? */
static int has_share(const char *tag) {
    char path[128], found[64];
    int i, fd;
    ssize_t n;
    for (i = 0; i < 32; i++) {
        snprintf(path, sizeof path, "/sys/bus/virtio/drivers/9pnet_virtio/virtio%d/mount_tag", i);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            continue;
        n = read(fd, found, sizeof found - 1);
        close(fd);
        if (n > 0) {
            found[n] = '\0';
            found[strcspn(found, "\n")] = '\0';
            if (!strcmp(found, tag))
                return 1;
        }
    }
    return 0;
}

void mount_volumes(void) {
    int i;
    for (i = 0; i < nvolumes; i++) {
        struct volume *v = &volumes[i];
        if (bound_by_sandbox(v->path))
            continue;
        if (!sandboxed && has_share(v->tag) &&
            mount(v->tag, v->path, "9p", MS_NOSUID | MS_NODEV, "trans=virtio,version=9p2000.L,msize=262144") == 0)
            continue;
        if (mount("tmpfs", v->path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") == 0)
            say("volume %s: no host directory given, using a temporary one", v->path);
        else
            say("volume %s: %s", v->path, strerror(errno));
    }
}

/* Each writable directory, parents first (kiln orders them): made inside a writable parent (/run/NAME once
 * /run is a tmpfs), or a tmpfs of its own over the read-only directory the image holds. */
void mount_writable(void) {
    int i;
    char opts[64];
    for (i = 0; i < ntmpfs; i++) {
        struct writable *w = &tmpfs_dirs[i];
        if (mkdir(w->path, (mode_t)w->mode) == 0 || (errno == EEXIST && access(w->path, W_OK) == 0)) {
            if (chown(w->path, w->uid, w->gid) < 0 || chmod(w->path, (mode_t)w->mode) < 0)
                say("writable %s: %s", w->path, strerror(errno));
            continue;
        }
        snprintf(opts, sizeof opts, "mode=%04o,uid=%u,gid=%u,size=16m", w->mode, w->uid, w->gid);
        if (mount("tmpfs", w->path, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
            say("writable %s: %s", w->path, strerror(errno));
    }
    for (i = 0; i < nowners; i++)
        if (chown(owners[i].path, owners[i].uid, owners[i].gid) < 0 || chmod(owners[i].path, (mode_t)owners[i].mode) < 0)
            say("volume %s: cannot give it to %u:%u: %s", owners[i].path, owners[i].uid, owners[i].gid,
                strerror(errno));
}
