/*
 * ipcguard.h - keep an nng IPC listener accepting despite nng#1518.
 *
 * nng before 1.6.0 (Debian 12 ships 1.5.2) stops accepting on an IPC
 * listener for good once a peer disconnects in the middle of the SP
 * handshake: a worker killed mid-connect or any stray client is enough,
 * and the process looks healthy while nobody new can reach it.
 * Connections made before the freeze keep working.
 *
 * ipcguard_listen() listens like nng_listen() and starts a thread that
 * once a second dials the URL with a probe socket of the peer protocol
 * (it never sends anything) and waits up to two seconds for the listener
 * to pass a new connection to its socket (nng's "accept" statistic: a
 * frozen listener still completes the handshake on the dialing side).
 * When none arrives, the listener is presumed frozen: the
 * socket path is unlinked and a new listener is started on the same
 * socket.  The frozen one is kept open, so the connections it already
 * carries keep working (closing it would drop them and unlink the new
 * path); the oldest of more than IPCGUARD_RETIRED_MAX retired listeners
 * is closed.
 *
 * RZKV_IPCGUARD=off in the environment (for tests only: it shows what
 * the guard is for) makes ipcguard_listen() a plain nng_listen().
 */
#ifndef RZKV_IPCGUARD_H
#define RZKV_IPCGUARD_H

#include <nng/nng.h>

#define IPCGUARD_INTERVAL_MS    1000    /* one probe connection a second */
#define IPCGUARD_TIMEOUT_MS     2000    /* no handshake by then: frozen */
#define IPCGUARD_RETIRED_MAX    4       /* frozen listeners kept open */

/* nng_listen(sock, url, NULL, 0) for an "ipc://" URL of a REQ or REP
 * socket, then guard it.  0 or an nng error (the listen's).  A guard that
 * cannot start is logged; the listener then works unguarded. */
int ipcguard_listen(nng_socket sock, const char *url);

/* Stop and join every guard; call before closing the sockets (a guard
 * also ends by itself once its socket is closed).  Idempotent. */
void ipcguard_stop(void);

/* Listeners re-created by all guards of this process so far. */
unsigned ipcguard_restarts(void);

#endif
