/*
 * handshake_poke.c - peers that leave an IPC listener in the middle of the
 * SP handshake, which froze nng's listeners before nng 1.6.0 (nng#1518),
 * for t/integ/storage_handshake.sh.  Not installed.
 *
 *   handshake_poke URL N
 *
 * Makes N such peers, alternately a raw connect/close on the socket path
 * and an nng REQ socket closed right after a non-blocking dial (what a
 * client killed at the wrong moment does).  Exit status 0, 2 on usage
 * errors.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

static void
poke_raw(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd;

    if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
        return;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    (void)connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    close(fd);
}

static void
poke_nng(const char *url)
{
    nng_socket req;

    if (nng_req0_open(&req) != 0)
        return;
    (void)nng_dial(req, url, NULL, NNG_FLAG_NONBLOCK);
    nng_close(req);
}

int
main(int argc, char **argv)
{
    int n;

    if (argc != 3 || strncmp(argv[1], "ipc://", 6) != 0 ||
        (n = atoi(argv[2])) <= 0) {
        fprintf(stderr, "usage: handshake_poke ipc://PATH N\n");
        return 2;
    }
    for (int i = 0; i < n; i++) {
        if (i % 2 == 0)
            poke_nng(argv[1]);
        else
            poke_raw(argv[1] + strlen("ipc://"));
        usleep(10 * 1000);
    }
    return 0;
}
