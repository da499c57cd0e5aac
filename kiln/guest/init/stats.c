/* kiln guest init: what the control channel reports: memory, CPU, threads, sockets, Python's gc, why the app ended. */
#include "init.h"

void kib_fields(const char *path, const char *const *keys, char *out, size_t size) {
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

void meminfo(void) {
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
unsigned long proc_field(const char *path, const char *key) {
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

unsigned long app_peak_kib;   /* the app's VmHWM, sampled while it runs (kept once it is gone) */
unsigned long oom_kills_at_start; /* /proc/vmstat's oom_kill (kernels with VM event counters) */
int kmsg_fd = -1;                 /* the kernel's log, from the app's start (a guest's kernel has no
                                            event counters: its OOM killer is read from its log) */

/* Whether the kernel's log, since the app started, says the OOM killer killed it. */
int oom_killed_in_log(void) {
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

void sample_app(void) {
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
void threads(void) {
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
void tcp_states(unsigned long counts[4]) {
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
int catches(pid_t pid, int sig) {
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
void gc_figures(char *out, size_t size) {
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

void stats(void) {
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
void explain_end(int status) {
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
