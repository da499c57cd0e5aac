/* kiln guest init: volumes (9p shares in the VM, ext4 partitions on a disk, host directories in the sandbox,
 * tmpfs otherwise), the
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

/* The image's directory under a volume the sandbox bound (opened before the bind), or -1. */
int bound_below(const char *path) {
    int i;
    for (i = 0; i < nbound_volumes; i++)
        if (!strcmp(bound_volumes[i], path))
            return bound_below_fds[i];
    return -1;
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

/* A firmware-booted disk (kiln export disk) holds each volume as an ext4 partition named "kiln-" + its tag:
 * mount the partition the kernel found with that GPT name (/sys/class/block/NAME/uevent says PARTNAME). */
static int mount_partition(const char *tag, const char *path) {
    char want[64], uevent[600], dev[300] = "", file[300];
    DIR *dir = opendir("/sys/class/block");
    struct dirent *e;
    int found = 0, fd;
    ssize_t n;
    if (!dir)
        return 0;
    snprintf(want, sizeof want, "PARTNAME=kiln-%s\n", tag);
    while (!found && (e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(file, sizeof file, "/sys/class/block/%s/uevent", e->d_name);
        if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
            continue;
        n = read(fd, uevent, sizeof uevent - 1);
        close(fd);
        if (n <= 0)
            continue;
        uevent[n] = '\0';
        if (strstr(uevent, want)) {
            snprintf(dev, sizeof dev, "/dev/%s", e->d_name);
            found = 1;
        }
    }
    closedir(dir);
    if (!found)
        return 0;
    if (mount(dev, path, "ext4", MS_NOSUID | MS_NODEV, NULL) < 0) {
        say("volume %s: its partition %s: %s", path, dev, strerror(errno));
        return 0;
    }
    return 1;
}

static int mount_volume(struct volume *v) {
    if (!sandboxed && has_share(v->tag) &&
        mount(v->tag, v->path, "9p", MS_NOSUID | MS_NODEV, "trans=virtio,version=9p2000.L,msize=262144") == 0)
        return 1;
    if (!sandboxed && mount_partition(v->tag, v->path))
        return 1;
    if (mount("tmpfs", v->path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") == 0) {
        say("volume %s: no host directory given, using a temporary one", v->path);
        return 1;
    }
    say("volume %s: %s", v->path, strerror(errno));
    return 0;
}

/* Each volume, filled from the image on its first use (firststart.c); -1 if the app must not start. */
int mount_volumes(void) {
    int i, failed = 0;
    for (i = 0; i < nvolumes; i++) {
        struct volume *v = &volumes[i];
        int below = bound_below(v->path); /* the image's directory under the volume */
        if (below < 0 && !bound_by_sandbox(v->path)) {
            below = open(v->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (!mount_volume(v)) {
                if (below >= 0)
                    close(below);
                continue;
            }
        }
        if (fill_volume(i, below) < 0)
            failed = 1;
        if (below >= 0)
            close(below);
    }
    return failed ? -1 : 0;
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
