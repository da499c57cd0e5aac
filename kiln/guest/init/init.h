/* kiln guest init: what its files share (see main.c). */
#ifndef KILN_INIT_H
#define KILN_INIT_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/random.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <termios.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#define CONFIG_PATH "/kiln/config"
#define DEBUG_EXIT_PORT 0xf4
#define MAX_ITEMS 256
#define SHM_OPTIONS "mode=1777,size=64m" /* /dev/shm, as Docker gives every container */
#define CONTROL_TTY "/dev/ttyS1"

struct volume {
    char tag[32];
    char path[256];
    int mounted;
};

/* A directory the app writes to: a tmpfs made for it, or a volume given to its account. */
struct writable {
    char path[256];
    unsigned uid, gid, mode;
};

enum rule_action { NOTIFY, NOTIFY_UNLESS_THREAD, ENOSYS_ };
struct rule {
    enum rule_action action;
    int nr;
    char name[32];
};

extern char *app_argv[MAX_ITEMS + 1];
extern char *app_envp[MAX_ITEMS + 1];
extern char workdir[4096];
extern char hostname[256];
extern int sandboxed;
extern struct volume volumes[16];
extern int nvolumes;
extern struct rule rules[64];
extern int nrules;
extern char *sandbox_env[32];
extern int nsandbox_env;
extern char *sandbox_args[MAX_ITEMS];
extern int nsandbox_args;
extern struct writable tmpfs_dirs[16];
extern int ntmpfs;
extern struct writable owners[16];
extern int nowners;
extern unsigned long keep_caps;
extern int app_started;
extern char env_text[2048];
extern char *sandbox_volumes[16];
extern int nsandbox_volumes;
extern const char *bound_volumes[16];
extern int nbound_volumes;
extern int bound_below_fds[16];
#define MAX_STEPS 12 /* kiln.guest.protocol.SETUP_STEPS_MAX */
#define STEP_ARGS 32
/* A step of a server's first start (firststart.c). */
struct step {
    char when[128];
    char *args[STEP_ARGS + 1];
    int nargs;
    char input_hex[8192];
    char file[256];
    char append[128];          /* no program: the input is appended to this file of the filled volume */
    char *argv[STEP_ARGS + 1]; /* the words expanded */
    char text[16384];          /* the input expanded */
    int runs;
};
extern struct step steps[MAX_STEPS];
extern int nsteps;
extern int steps_dropped;
extern char **run_argv;
extern int run_input;
extern int wake_pipe[2];
extern int ctl_fd;
extern int waiting_seed;
extern char ctl_in[4096];
extern size_t ctl_len;
extern struct timespec boot_time;
extern char ctl_tag[24];
extern volatile pid_t app_pid;
extern unsigned long app_peak_kib;
extern unsigned long oom_kills_at_start;
extern int kmsg_fd;

void say(const char *fmt, ...);
void must(int ok, const char *what);
void load_config(const char *path);
char *cmdline_param(const char *key, char *out, size_t outlen);
void std_links(const char *dev);
void mount_fs(const char *src, const char *dst, const char *type, unsigned long flags,
                     const char *data);
void forward_signal(int sig);
void answer(int listener);
void become_app(int report_fd);
int run_app(void);
void power_off(int status);
int set_addr(int fd, const char *ifname, unsigned long req, const char *addr);
int link_up(int fd, const char *ifname);
int configure(int fd, const char *ifname, const char *cidr);
int unhex(const char *hex, char *out, size_t outlen);
void add_hosts(void);
void setup_network(void);
void env_from_cmdline(void);
int credit_seed(const char *hex, int reseed);
void seed_entropy(void);
void bind_dev(const char *name);
void add_sandbox_env(void);
void enter_sandbox(const char *root);
void drop_capabilities(void);
void keep_only(unsigned long caps);
void start_clients(void);
pid_t client_forwarder(const char *gw);
int bound_by_sandbox(const char *path);
int mount_volumes(void);
int bound_below(const char *path);
int fill_volume(int i, int below);
int run_setup(void);
void setup_line(const char *key, const char *value);
void mount_writable(void);
void argv_override(void);
void parse_user(char *value);
void app_account(uid_t *uid, gid_t *gid);
int mount_secrets(void);
int bind_mounts(void);
void parse_caps(char *value);
void become_user(void);
int install_policy(void);
const char *rule_name(int nr);
extern char *helpers[16];
extern int nhelpers;
void add_helper(const char *path);
void noexec_writable(void);
int execve_path(int listener, const struct seccomp_notif *req, char *out, size_t outlen);
int is_helper(const char *path);
void wake(int sig);
void open_control(void);
void reply(const char *fmt, ...);
int listening_on(unsigned port);
int http_status(unsigned port, const char *path);
int probe(const char *kind, unsigned port, char *why, size_t len);
int connect_loopback(unsigned port);
void request(char *line);
void serve_control(short revents);
int control_pollfd(struct pollfd *fd);
void wait_for_seed(void);
void kib_fields(const char *path, const char *const *keys, char *out, size_t size);
void meminfo(void);
unsigned long proc_field(const char *path, const char *key);
int oom_killed_in_log(void);
void sample_app(void);
void threads(void);
void tcp_states(unsigned long counts[4]);
int catches(pid_t pid, int sig);
void gc_figures(char *out, size_t size);
void stats(void);
void explain_end(int status);

#endif
