/* kiln guest init: a compose service's secrets (VM only). The host shares a directory of the secrets' files
 * as the read-only 9p device "kiln-secrets"; kiln.secrets=HEX on the command line names them, one line each:
 * "FILE TARGET UID GID MODE" (FILE: its name in the share; TARGET: its name under /run/secrets; UID and GID -1:
 * the app's account). Init copies each into a tmpfs at /run/secrets, given to that account with that mode
 * (0400 by default: readable by the service's account only), unmounts the share, and makes the tmpfs
 * read-only, before the volumes are mounted (a first start reads NAME_FILE) and the app starts. Nothing of a secret's content is written anywhere else, or said. */
#include "init.h"

#define SECRETS "/run/secrets"
#define SHARE SECRETS "/.kiln-share"
#define SECRETS_TAG "kiln-secrets"

/* /run/secrets on a tmpfs of its own, with /run made a tmpfs first if the image's is read-only (before the
 * writable directories are made: those under /run are then made in that tmpfs, and one for /run itself finds
 * it writable and mounts nothing over it). */
static int secrets_dir(void) {
    if (mkdir(SECRETS, 0755) < 0 && errno != EEXIST) {
        if (errno != EROFS && errno != ENOENT)
            return -1;
        mkdir("/run", 0755);
        if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0 ||
            (mkdir(SECRETS, 0755) < 0 && errno != EEXIST))
            return -1;
    }
    return mount("tmpfs", SECRETS, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m");
}

/* Copy FILE of the share to TARGET under /run/secrets, for uid:gid with mode. */
static int place(const char *file, const char *target, uid_t uid, gid_t gid, mode_t mode) {
    char from[300], to[300], buf[4096];
    ssize_t n;
    int in, out, ok = 0;
    snprintf(from, sizeof from, "%s/%s", SHARE, file);
    snprintf(to, sizeof to, "%s/%s", SECRETS, target);
    if ((in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return -1;
    if ((out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        close(in);
        return -1;
    }
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) {
            ok = -1;
            break;
        }
    if (n < 0 || fchown(out, uid, gid) < 0 || fchmod(out, mode) < 0)
        ok = -1;
    explicit_bzero(buf, sizeof buf);
    close(in);
    close(out);
    return ok;
}

int mount_secrets(void) {
    static char hex[4096], text[2048];
    char *line, *save = NULL;
    int placed = 0;
    if (sandboxed || !cmdline_param("kiln.secrets", hex, sizeof hex))
        return 0;
    if (unhex(hex, text, sizeof text) < 0) {
        say("secrets: kiln.secrets is not hex");
        return -1;
    }
    if (secrets_dir() < 0 || mkdir(SHARE, 0700) < 0 ||
        mount(SECRETS_TAG, SHARE, "9p", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "trans=virtio,version=9p2000.L") < 0) {
        say("secrets: cannot mount them at %s: %s", SECRETS, strerror(errno));
        return -1;
    }
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char file[128], target[128];
        long uid, gid;
        unsigned mode;
        uid_t app_uid;
        gid_t app_gid;
        if (sscanf(line, "%127s %127s %ld %ld %o", file, target, &uid, &gid, &mode) != 5 || strchr(file, '/') ||
            strchr(target, '/') || target[0] == '.') {
            say("secrets: not a secret line: %s", line);
            return -1;
        }
        app_account(&app_uid, &app_gid);
        if (place(file, target, uid < 0 ? app_uid : (uid_t)uid, gid < 0 ? app_gid : (gid_t)gid,
                  (mode_t)(mode & 0777)) < 0) {
            say("secrets: %s/%s: %s", SECRETS, target, strerror(errno));
            return -1;
        }
        placed++;
    }
    if (umount(SHARE) < 0 || rmdir(SHARE) < 0 ||
        mount(NULL, SECRETS, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        say("secrets: %s: %s", SECRETS, strerror(errno));
        return -1;
    }
    say("secrets: %d in %s, read-only", placed, SECRETS);
    return 0;
}
