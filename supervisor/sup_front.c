/*
 * sup_front.c - the node's one TCP address: bound by the supervisor,
 * served by the coordinators.
 *
 * NAME
 *	sup_front - bind node.local_address and hand it to the coordinators
 * DESCRIPTION
 *	Clients and peer nodes know a node by one address.  It must outlive
 *	any worker crash, so the supervisor binds it, before it detaches
 *	(so that a taken port reaches the user), and keeps the socket for the
 *	life of the node.  Every coordinator it starts gets the socket as
 *	RZKV_LISTEN_FD (common/contract.h) and serves it itself
 *	(worker/coord_front.c): the supervisor is not on the data path.  A
 *	coordinator calls listen() when it is ready, which is after the
 *	storage workers are, so no client is accepted by a node that cannot
 *	answer; while a coordinator restarts, new connections wait in the
 *	kernel's backlog, and the clients of the one that died reconnect.
 *
 *	On stop the listening socket is shut down first, for the
 *	coordinators too (they share it), so no new work arrives while the
 *	workers drain.
 * SEE ALSO
 *	worker/coord_front.c, DESIGN.md section 3
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "sup.h"

/* Far above the descriptors a child is given (3 and 4). */
#define FRONT_FD_MIN 100

int
sup_front_bind(struct sup *s, char *err, size_t errlen)
{
    const char *addr = s->node->local_address;
    char host[256], port[16];
    int p;
    struct addrinfo hints = { .ai_flags = AI_PASSIVE,
                              .ai_socktype = SOCK_STREAM }, *ai;

    s->listen_fd = -1;
    if (conf_parse_address(addr, host, sizeof(host), &p) != 0) {
        snprintf(err, errlen, "node.local_address \"%s\" is not an address",
                 addr);
        return -1;
    }
    snprintf(port, sizeof(port), "%d", p);
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr,
                 gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
    int one = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    /* Out of the way of the descriptors a child's exec sets up. */
    s->listen_fd = fcntl(fd, F_DUPFD_CLOEXEC, FRONT_FD_MIN);
    close(fd);
    if (s->listen_fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Stop accepting, for every process that holds the socket: shutdown()
 * of a listening socket takes it out of the listening state, and the
 * connections still in its backlog are reset.
 */
void
sup_front_close_listener(struct sup *s)
{
    if (s->listen_fd < 0)
        return;
    shutdown(s->listen_fd, SHUT_RDWR);
    close(s->listen_fd);
    s->listen_fd = -1;
    log_info("front door closed: no new connections");
}
