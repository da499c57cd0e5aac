/* kiln guest init: a server's first start. A volume that is empty when it is mounted is filled from what the
 * image holds at its path (as Docker fills a named volume on first use): a database's data directory that kiln
 * initialized at build time with the server's own initializer (initdb). Then, on that first start only, the
 * config's set-up steps run, in order, each started as the app is: "setup-step WHEN" opens a step, run when
 * WHEN holds ("-": always; NAME: NAME is set; NAME!=VALUE: it is set to something else), "setup-arg WORD"
 * lines are its program and arguments (the image's own server in its single-user mode), and its standard input
 * is "setup-input HEX" text or "setup-file PATH", a file of the image, as it is. A step with "setup-append FILE"
 * runs no program: its input is appended to FILE of the filled volume (the official postgres script's
 * `host all all all $POSTGRES_HOST_AUTH_METHOD` line in pg_hba.conf), each value in it one word. WHEN may also be
 * !NAME (NAME is not set) or NAME=VALUE.
 *
 * In a step's words and its input text, ${NAME} is the run's NAME (or the contents of the file NAME_FILE
 * names, as the official images read secrets); ${NAME|OTHER} the first of them that is set (MARIADB_ROOT_PASSWORD
 * or MYSQL_ROOT_PASSWORD); ${NAME:-DEFAULT} DEFAULT when none is. In input text a value is quoted for the SQL
 * string literal or identifier it sits in (its quote doubled: ' or "; a backslash is the setup's to make literal:
 * MariaDB's input sets NO_BACKSLASH_ESCAPES); a line break in a value is refused. A variable a step needs that is not set stops the
 * start before the volume is filled, in one line naming it.
 *
 * A first start that does not finish leaves VOLUME/.kiln-first-start; the next start finds it and says so,
 * and the volume is left as that start left it. */
#include "init.h"

#define MARKER ".kiln-first-start"
struct step steps[MAX_STEPS];
int nsteps;
int steps_dropped; /* a config with more steps than MAX_STEPS: it starts no first start at all */
static int filled_one = -1; /* the index of a volume filled on this start */

/* A "setup-*" line of /kiln/config (main.c's load_config hands them here). */
void setup_line(const char *key, const char *value) {
    struct step *st;
    if (steps_dropped)
        return;
    if (!strcmp(key, "setup-step") || nsteps == 0) {
        if (nsteps == MAX_STEPS) { /* never a step's words added to the one before it */
            steps_dropped = 1;
            return;
        }
        st = &steps[nsteps++];
        snprintf(st->when, sizeof st->when, "%s", strcmp(key, "setup-step") ? "-" : value);
        if (!strcmp(key, "setup-step"))
            return;
    }
    st = &steps[nsteps - 1];
    if (!strcmp(key, "setup-arg") && st->nargs < STEP_ARGS)
        st->args[st->nargs++] = strdup(value);
    else if (!strcmp(key, "setup-input"))
        snprintf(st->input_hex, sizeof st->input_hex, "%s", value);
    else if (!strcmp(key, "setup-file"))
        snprintf(st->file, sizeof st->file, "%s", value);
    else if (!strcmp(key, "setup-append") && !strchr(value, '/') && strcmp(value, "..") && strcmp(value, "."))
        snprintf(st->append, sizeof st->append, "%s", value);
}

static const char *env_value(const char *name) {
    size_t n = strlen(name);
    int i;
    for (i = 0; app_envp[i]; i++)
        if (!strncmp(app_envp[i], name, n) && app_envp[i][n] == '=')
            return app_envp[i] + n + 1;
    return NULL;
}

/* NAME's value, or the first line of the file NAME_FILE names (-1 if neither is set or the file is unreadable). */
static int lookup_one(const char *name, char *out, size_t outlen) {
    char key[96];
    const char *v = env_value(name);
    FILE *f;
    if (v) {
        snprintf(out, outlen, "%s", v);
        return 0;
    }
    snprintf(key, sizeof key, "%s_FILE", name);
    if (!(v = env_value(key)) || !(f = fopen(v, "re")))
        return -1;
    if (!fgets(out, (int)outlen, f))
        out[0] = '\0';
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
    return 0;
}

/* The first of NAME|OTHER|... that is set, or what follows ":-" (-1: none, and no default). */
static int lookup(const char *names, char *out, size_t outlen) {
    char copy[128], *name, *save = NULL, *fallback = strstr(names, ":-");
    snprintf(copy, sizeof copy, "%.*s", fallback ? (int)(fallback - names) : (int)strlen(names), names);
    for (name = strtok_r(copy, "|", &save); name; name = strtok_r(NULL, "|", &save))
        if (lookup_one(name, out, outlen) == 0)
            return 0;
    if (!fallback)
        return -1;
    snprintf(out, outlen, "%s", fallback + 2);
    return 0;
}

/* text with its ${...} filled in (sql 1: quoted for the SQL string literal or identifier it sits in; 2: each
 * value one word, for a line of a config file); -1 and one line if one is unset. */
static int expand(const char *text, char *out, size_t outlen, int sql) {
    const char *p;
    char *o = out, *end = out + outlen - 1;
    for (p = text; *p && o < end;) {
        char name[128], value[1024];
        const char *close, *v;
        char quote;
        size_t n;
        if (strncmp(p, "${", 2) || !(close = strchr(p + 2, '}')) || (n = (size_t)(close - p - 2)) >= sizeof name) {
            *o++ = *p++;
            continue;
        }
        memcpy(name, p + 2, n);
        name[n] = '\0';
        if (lookup(name, value, sizeof value) < 0) {
            name[strcspn(name, "|:")] = '\0'; /* the first name is the one to give */
            say("first start: %s is not set, and the server's setup needs it: give it with -e %s=... (or %s_FILE)",
                name, name, name);
            return -1;
        }
        if (strpbrk(value, "\r\n")) { /* a statement ends at a line's end in a server's single-user mode */
            say("first start: %s holds a line break, which kiln does not pass to the server's setup", name);
            return -1;
        }
        if (sql == 2 && (!value[0] || strpbrk(value, " \t#"))) {
            name[strcspn(name, "|:")] = '\0';
            say("first start: %s must be one word here (it goes into a line of the server's config)", name);
            return -1;
        }

        /* in SQL, the quote the value sits in is doubled inside it: '...' a string, "..." or `...` a name */
        quote = sql == 1 && p > text && strchr("'\"`", p[-1]) ? p[-1] : (sql == 1 ? '\'' : 0);
        for (v = value; *v && o < end - 1; v++) {
            if (quote && *v == quote)
                *o++ = quote;
            *o++ = *v;
        }
        p = close + 1;
    }
    *o = '\0';
    return 0;
}

/* Does one condition hold for this run (NAME: it is set; !NAME: it is not; NAME!=VALUE: set, to something else;
 * NAME=VALUE: set, to that)? */
static int holds_one(const char *when) {
    char name[128], value[1024];
    const char *ne = strstr(when, "!="), *eq = ne ? NULL : strchr(when, '='), *op = ne ? ne : eq;
    if (when[0] == '!')
        return lookup(when + 1, value, sizeof value) < 0;
    snprintf(name, sizeof name, "%.*s", op ? (int)(op - when) : (int)strlen(when), when);
    if (lookup(name, value, sizeof value) < 0)
        return 0;
    return ne ? strcmp(value, ne + 2) != 0 : eq ? strcmp(value, eq + 1) == 0 : 1;
}

/* Does the step's WHEN hold: "-", or conditions joined by "," that all hold? */
static int holds(const char *when) {
    char copy[128], *part, *save = NULL;
    if (!strcmp(when, "-"))
        return 1;
    memcpy(copy, when, sizeof copy - 1); /* a step's WHEN: at most 127 characters */
    copy[sizeof copy - 1] = '\0';
    for (part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save))
        if (!holds_one(part))
            return 0;
    return 1;
}

/* Every step that runs on this start, its words and input filled in; -1 if a variable it needs is unset. */
static int expand_steps(void) {
    static char template[8192];
    int i, j;
    if (steps_dropped) {
        say("first start: the image has more set-up steps than this init runs (%d): it is not started", MAX_STEPS);
        return -1;
    }
    for (i = 0; i < nsteps; i++) {
        struct step *st = &steps[i];
        if (!(st->runs = (st->nargs > 0 || st->append[0]) && holds(st->when)))
            continue;
        for (j = 0; j < st->nargs; j++) {
            char word[1024];
            if (expand(st->args[j], word, sizeof word, 0) < 0)
                return -1;
            st->argv[j] = strdup(word);
        }
        st->argv[st->nargs] = NULL;
        if (st->input_hex[0] && (unhex(st->input_hex, template, sizeof template) < 0 ||
                                 expand(template, st->text, sizeof st->text, st->append[0] ? 2 : 1) < 0))
            return -1;
    }
    return 0;
}

/* A directory stream of its own over dirfd (a dup would share, and move, dirfd's offset). */
static DIR *listing(int dirfd) {
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0)
        close(fd);
    return d;
}

static int is_empty(int dirfd) {
    int empty = 1;
    DIR *d;
    struct dirent *e;
    if (!(d = listing(dirfd)))
        return 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "lost+found")) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

static int all_zero(const char *p, size_t n) {
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Copy a file's bytes, leaving its blocks of zeros as holes (as cp --sparse=always does): a database's
 * preallocated files (MariaDB's 96 MiB redo log, its 12 MiB system tablespace) take no memory in a tmpfs
 * volume until the server writes them. A short write is the volume running out of room (ENOSPC). */
static int copy_sparse(int in, int out) {
    static char buf[65536];
    ssize_t n, w;
    off_t size = 0;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        size += n;
        if (all_zero(buf, (size_t)n)) {
            if (lseek(out, n, SEEK_CUR) < 0)
                return -1;
            continue;
        }
        if ((w = write(out, buf, (size_t)n)) != n) {
            if (w >= 0)
                errno = ENOSPC;
            return -1;
        }
    }
    if (n < 0 || ftruncate(out, size) < 0) /* a file that ends in a hole gets its length */
        return -1;
    return 0;
}

/* Copy the tree under from into to, every entry given to uid:gid with its mode. */
static int copy_tree(int from, int to, uid_t uid, gid_t gid) {
    int ok = 0;
    DIR *d;
    struct dirent *e;
    if (!(d = listing(from)))
        return -1;
    while (ok == 0 && (e = readdir(d))) {
        struct stat st;
        char target[4096];
        ssize_t n;
        int in, out;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || fstatat(from, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (mkdirat(to, e->d_name, st.st_mode & 07777) < 0 || (in = openat(from, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
                return -1;
            if ((out = openat(to, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
                close(in);
                return -1;
            }
            ok = copy_tree(in, out, uid, gid);
            if (fchown(out, uid, gid) < 0 || fchmod(out, st.st_mode & 07777) < 0)
                ok = -1;
            close(in);
            close(out);
        } else if (S_ISLNK(st.st_mode)) {
            n = readlinkat(from, e->d_name, target, sizeof target - 1);
            if (n < 0)
                return -1;
            target[n] = '\0';
            if (symlinkat(target, to, e->d_name) < 0 || fchownat(to, e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                return -1;
        } else if (S_ISREG(st.st_mode)) {
            if ((in = openat(from, e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
                return -1;
            out = openat(to, e->d_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 07777);
            if (out < 0) {
                close(in);
                return -1;
            }
            ok = copy_sparse(in, out);
            if (ok == 0 && (fchown(out, uid, gid) < 0 || fchmod(out, st.st_mode & 07777) < 0))
                ok = -1;
            close(in);
            close(out);
        }
    }
    closedir(d);
    return ok;
}

/* The owner a volume is given ("owner PATH UID GID MODE"), root if none. */
static void volume_owner(const char *path, uid_t *uid, gid_t *gid) {
    int i;
    *uid = 0;
    *gid = 0;
    for (i = 0; i < nowners; i++)
        if (!strcmp(owners[i].path, path)) {
            *uid = owners[i].uid;
            *gid = owners[i].gid;
        }
}

/* After volume i is mounted over the image's directory `below` (an fd opened before the mount): refuse a volume
 * whose first start did not finish; fill an empty one from the image. Returns -1 when the app must not start. */
int fill_volume(int i, int below) {
    struct volume *v = &volumes[i];
    int at, marker;
    uid_t uid;
    gid_t gid;
    if (below < 0)
        return 0;
    at = open(v->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (at < 0)
        return 0;
    if (faccessat(at, MARKER, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        say("volume %s: its first start did not finish (%s/%s is there): it is left as that start left it; "
            "remove the volume (or that file) to start again", v->path, v->path, MARKER);
        close(at);
        return -1;
    }
    if (!is_empty(at) || is_empty(below)) {
        close(at);
        return 0;
    }
    if (nsteps > 0 && filled_one < 0 && expand_steps() < 0) {
        close(at);
        return -1; /* nothing written: the next start is a first start again */
    }
    volume_owner(v->path, &uid, &gid);
    marker = openat(at, MARKER, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (marker >= 0)
        close(marker);
    say("volume %s: empty: filled from the image (first start)", v->path);
    if (copy_tree(below, at, uid, gid) < 0) {
        say("volume %s: cannot fill it from the image: %s", v->path, strerror(errno));
        close(at);
        return -1;
    }
    if (filled_one < 0)
        filled_one = i;
    if (nsteps == 0)
        unlinkat(at, MARKER, 0);
    close(at);
    return 0;
}

/* One step, started as the app is (its account, the syscall policy: its own execve is the one init lets
 * through), its input on its standard input; its exit status. */
static int run_step(struct step *st) {
    int in[2] = {-1, -1}, status;
    size_t len = strlen(st->text);
    say("first start: %s sets the server up", st->argv[0]);
    if (st->file[0] && len > 0) { /* the text, then the file (USE `db`; then the image's init files) */
        char buf[65536];
        ssize_t n;
        int file = open(st->file, O_RDONLY | O_CLOEXEC);
        in[0] = (int)syscall(SYS_memfd_create, "kiln-setup", MFD_CLOEXEC);
        if (file < 0 || in[0] < 0) {
            say("first start: %s: %s", st->file, strerror(errno));
            return 125;
        }
        if (write(in[0], st->text, len) != (ssize_t)len)
            say("first start: the setup's input could not be written");
        while ((n = read(file, buf, sizeof buf)) > 0)
            if (write(in[0], buf, (size_t)n) != n)
                break;
        close(file);
        lseek(in[0], 0, SEEK_SET);
        memset(st->text, 0, sizeof st->text);
    } else if (st->file[0]) {
        in[0] = open(st->file, O_RDONLY | O_CLOEXEC);
        if (in[0] < 0) {
            say("first start: %s: %s", st->file, strerror(errno));
            return 125;
        }
    } else {
        must(pipe2(in, O_CLOEXEC) == 0, "create a pipe");
        /* at most 16 KiB: the pipe holds it all before the step reads it */
        if (write(in[1], st->text, len) != (ssize_t)len)
            say("first start: the setup's input did not fit its pipe");
        close(in[1]);
        memset(st->text, 0, sizeof st->text); /* a password in it stays nowhere */
    }
    run_argv = st->argv;
    run_input = in[0];
    status = run_app();
    run_argv = app_argv;
    run_input = -1;
    app_pid = 0;
    close(in[0]);
    return status;
}

/* An append step: its text at the end of its file in the filled volume (which the image's initializer made). */
static int append_step(struct step *st) {
    char path[400];
    size_t len = strlen(st->text);
    int fd;
    snprintf(path, sizeof path, "%s/%s", volumes[filled_one].path, st->append);
    fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || write(fd, st->text, len) != (ssize_t)len) {
        say("first start: %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 125;
    }
    close(fd);
    say("first start: a line added to %s", path);
    return 0;
}

/* On a first start, the steps that hold, in order; then the first start is done. -1: one failed. */
int run_setup(void) {
    char path[300];
    int i, status;
    if (filled_one < 0 || nsteps == 0)
        return 0;
    for (i = 0; i < nsteps; i++) {
        if (!steps[i].runs)
            continue;
        if ((status = steps[i].append[0] ? append_step(&steps[i]) : run_step(&steps[i])) != 0) {
            say("first start: %s failed (status %d): volume %s is left as it stopped",
                steps[i].append[0] ? steps[i].append : steps[i].argv[0], status,
                volumes[filled_one].path);
            return -1;
        }
    }
    snprintf(path, sizeof path, "%s/%s", volumes[filled_one].path, MARKER);
    unlink(path);
    return 0;
}
