/* kiln guest init: entropy (VM only): the host's seed into the kernel's pool. */
#include "init.h"

/* ---- entropy (VM only) -------------------------------------------------- */

/* Credit the hex-encoded seed to the kernel's pool; with reseed, make the CRNG use it now
 * (a restored clone must not go on from the snapshot's random state). 0 on success. */
int credit_seed(const char *hex, int reseed) {
    struct {
        int entropy_count;
        int buf_size;
        unsigned char buf[64];
    } seed;
    int fd, i, n = 0, ok = 0;

    for (i = 0; hex[i] && hex[i + 1] && n < (int)sizeof seed.buf; i += 2) {
        unsigned int byte;
        if (sscanf(hex + i, "%2x", &byte) != 1)
            break;
        seed.buf[n++] = (unsigned char)byte;
    }
    if (n == 0)
        return -1;
    seed.entropy_count = n * 8;
    seed.buf_size = n;
    fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ioctl(fd, RNDADDENTROPY, &seed) < 0) {
        say("could not credit the entropy seed: %s", strerror(errno));
        ok = -1;
    } else if (reseed && ioctl(fd, RNDRESEEDCRNG) < 0) {
        say("could not reseed the CRNG: %s", strerror(errno));
        ok = -1;
    }
    if (fd >= 0)
        close(fd);
    memset(&seed, 0, sizeof seed);
    return ok;
}

void seed_entropy(void) {
    char hexbuf[160], probe;
    if (cmdline_param("kiln.seed", hexbuf, sizeof hexbuf))
        credit_seed(hexbuf, 0);
    memset(hexbuf, 0, sizeof hexbuf);
    if (getrandom(&probe, 1, GRND_NONBLOCK) < 0)
        say("random pool not ready yet (%s); getrandom() may block", strerror(errno));
}
