/* kiln guest init: the app's privileges: the capabilities it keeps in the sandbox, and the account it runs as.
 *
 * "caps NAME..." in /kiln/config names capabilities the app keeps in the sandbox besides binding low
 * ports: setuid and setgid for a service that starts as root and switches to its own account itself
 * (mosquitto, lighttpd), as the VM's root can. "user UID GID [GID...]" starts the app as that account
 * (an image's USER, a unit's User=/Group=), with its supplementary groups, keeping CAP_NET_BIND_SERVICE
 * as an ambient capability so that it can still listen on a low port. */
#include "init.h"

unsigned long keep_caps = 1ul << CAP_NET_BIND_SERVICE;
static int switch_user;
static uid_t app_uid;
static gid_t app_gid;
static gid_t app_groups[32];
static int napp_groups;

void parse_user(char *value) {
    char *save = NULL, *word = strtok_r(value, " ", &save);
    if (!word)
        return;
    app_uid = (uid_t)strtoul(word, NULL, 10);
    word = strtok_r(NULL, " ", &save);
    app_gid = word ? (gid_t)strtoul(word, NULL, 10) : (gid_t)app_uid;
    while ((word = strtok_r(NULL, " ", &save)) && napp_groups < 32)
        app_groups[napp_groups++] = (gid_t)strtoul(word, NULL, 10);
    switch_user = 1;
}

/* The account the app runs as (root when the config names none): what a secret is given to. */
void app_account(uid_t *uid, gid_t *gid) {
    *uid = switch_user ? app_uid : 0;
    *gid = switch_user ? app_gid : 0;
}

void parse_caps(char *value) {
    char *save = NULL, *word;
    for (word = strtok_r(value, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        if (!strcmp(word, "setuid"))
            keep_caps |= 1ul << CAP_SETUID;
        else if (!strcmp(word, "setgid"))
            keep_caps |= 1ul << CAP_SETGID;
        else if (!strcmp(word, "chown"))
            keep_caps |= 1ul << CAP_CHOWN;
        else
            say("caps: %s is not one the sandbox keeps", word);
    }
}

static void set_caps(unsigned long caps, int inheritable) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].effective = data[0].permitted = (unsigned)caps;
    if (inheritable)
        data[0].inheritable = (unsigned)caps;
    must(syscall(SYS_capset, &hdr, data) == 0, "drop capabilities");
}

/* Keep only the capabilities in keep_caps, in every set, for good (and, until become_user has switched to
 * the app's account, what switching takes). */
void drop_capabilities(void) {
    if (switch_user)
        keep_caps |= (1ul << CAP_SETUID) | (1ul << CAP_SETGID);
    keep_only(keep_caps);
}

/* Keep only `caps`, in every set and the bounding set, and set no_new_privs: for good. */
void keep_only(unsigned long caps) {
    int cap;
    for (cap = 0; cap <= CAP_LAST_CAP; cap++)
        if (!(caps & (1ul << cap)))
            prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    set_caps(caps, 0);
    must(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "set no_new_privs");
}

/* The app's own account, if the config names one: its groups, its gid, its uid, and low ports still. */
void become_user(void) {
    if (!switch_user)
        return;
    must(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0, "keep capabilities across setuid");
    must(setgroups((size_t)napp_groups, app_groups) == 0, "set the app's groups");
    must(setgid(app_gid) == 0, "set the app's group");
    must(setuid(app_uid) == 0, "set the app's user");
    set_caps(1ul << CAP_NET_BIND_SERVICE, 1);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) < 0)
        say("the app's account cannot keep low ports: %s", strerror(errno));
}
