/* kiln guest init: compose's tmpfs: directories, then host files and directories bound over the image's (VM only): compose's binds, such as
 * ./nginx.conf:/etc/nginx/conf.d/default.conf:ro. kiln.binds=HEX names them, one line each, "TAG GUEST NAME RO":
 * the 9p share TAG (a host directory: the bound directory itself, or the bound file's directory), NAME in it
 * ("-": all of it) bound over GUEST, read-only if RO is 1. GUEST must be in the image, a file for a file and a
 * directory for a directory: a bind covers what the sealed root holds, it adds nothing to it, and the root and
 * its digest stay as they were. The share's own mount is detached once the bind holds it, so the app sees
 * the one file, not the rest of its directory. */
#include "init.h"

#define STAGING "/tmp/.kiln-bind"

static int bind_one(const char *tag, const char *guest, const char *name, int ro) {
    char src[400];
    struct stat want, have;
    unsigned long flags = MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0);
    int ok = -1;
    if (guest[0] != '/' || lstat(guest, &have) < 0) {
        say("bind %s: not in the image: kiln binds over what the image holds, and adds nothing to it", guest);
        return -1;
    }
    if (mkdir(STAGING, 0700) < 0 && errno != EEXIST)
        return -1;
    if (mount(tag, STAGING, "9p", flags, "trans=virtio,version=9p2000.L,msize=262144") < 0) {
        say("bind %s: %s", guest, strerror(errno));
        return -1;
    }
    if (!strcmp(name, "-"))
        snprintf(src, sizeof src, "%s", STAGING);
    else
        snprintf(src, sizeof src, "%s/%s", STAGING, name);
    if (stat(src, &want) < 0)
        say("bind %s: %s", guest, strerror(errno));
    else if (S_ISDIR(want.st_mode) != S_ISDIR(have.st_mode))
        say("bind %s: the image holds a %s there, and the host gives a %s", guest,
            S_ISDIR(have.st_mode) ? "directory" : "file", S_ISDIR(want.st_mode) ? "directory" : "file");
    else if (mount(src, guest, NULL, MS_BIND, NULL) < 0 ||
             mount(NULL, guest, NULL, MS_BIND | MS_REMOUNT | flags, NULL) < 0)
        say("bind %s: %s", guest, strerror(errno));
    else
        ok = 0;
    umount2(STAGING, MNT_DETACH); /* the bind keeps what it needs */
    return ok;
}

/* kiln.tmpfs=HEX: a fresh tmpfs (mode 1777, as Docker's) over each directory named, one a line; the directory
 * must be in the image. */
static int tmpfs_mounts(void) {
    static char hex[2048], text[1024];
    char *line, *save = NULL;
    struct stat st;
    if (!cmdline_param("kiln.tmpfs", hex, sizeof hex))
        return 0;
    if (unhex(hex, text, sizeof text) < 0)
        return -1;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] != '/' || stat(line, &st) < 0 || !S_ISDIR(st.st_mode)) {
            say("tmpfs %s: not a directory of the image: kiln covers what the image holds, and adds nothing", line);
            return -1;
        }
        if (mount("tmpfs", line, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) {
            say("tmpfs %s: %s", line, strerror(errno));
            return -1;
        }
        say("tmpfs %s", line);
    }
    return 0;
}

int bind_mounts(void) {
    static char hex[4096], text[2048];
    char *line, *save = NULL;
    if (sandboxed)
        return 0;
    if (tmpfs_mounts() < 0)
        return -1;
    if (!cmdline_param("kiln.binds", hex, sizeof hex))
        return 0;
    if (unhex(hex, text, sizeof text) < 0) {
        say("binds: kiln.binds is not hex");
        return -1;
    }
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char tag[32], guest[256], name[256];
        int ro;
        if (sscanf(line, "%31s %255s %255s %d", tag, guest, name, &ro) != 4 || strchr(name + 1, '/')) {
            say("binds: not a bind line: %s", line);
            return -1;
        }
        if (bind_one(tag, guest, name, ro) < 0)
            return -1;
        say("bind %s%s", guest, ro ? " (read-only)" : "");
    }
    rmdir(STAGING);
    return 0;
}
