/*
 * sp.h - the coordinator's side of nng's SP protocol (common/spwire.h):
 * REQ connections to storage workers and peers (sp.c), and the loop
 * thread that serves clients' and peers' connections (sp_loop.c).
 */
#ifndef RZKV_SP_H
#define RZKV_SP_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "spwire.h"

/*
 * An SP REQ connection to one REP socket (a storage worker over IPC or a
 * peer node over TCP), dialed and redialed by the loop thread.  Every
 * call but spc_open is made with lock held, and the callbacks run with it
 * held, on the loop thread.
 */
struct spc;
/* A reply for request id; body is valid during the call only. */
typedef void (*spc_reply_fn)(void *arg, uint32_t id, const uint8_t *body,
                             size_t len);
/* The connection came up (up = 1) or went down (0, why says why). */
typedef void (*spc_state_fn)(void *arg, int up, const char *why);

/* url: tcp://host:port or ipc://path.  NULL with err on a bad url. */
struct spc *spc_open(const char *url, size_t recvmax, nng_mtx *lock,
                     spc_reply_fn reply, spc_state_fn state, void *arg,
                     char *err, size_t errlen);
/* Send one request: a 4-byte request id (high bit set) and body[0..len).
 * -1 if the connection is not up. */
int spc_send(struct spc *c, uint32_t id, const uint8_t *body, size_t len);
int spc_up(const struct spc *c);
/* Close and stop dialing; call without the lock. */
void spc_hangup(struct spc *c);

/* ---- the loop (sp_loop.c) ------------------------------------------------ */

/* What epoll's data points at: each object starts with its kind. */
enum sp_item_kind { SP_ITEM_LISTEN, SP_ITEM_WAKE, SP_ITEM_CONN, SP_ITEM_SPC };
struct sp_item {
    enum sp_item_kind kind;
};

/* A connection served by the loop (the REP side). */
struct sp_conn;

/*
 * A whole request from c, on the loop thread: hdr is the requester's
 * backtrace, to be given back with the reply; both pointers are valid
 * during the call only.  Return 0 (taken), or -1 (no room now: the loop
 * stops reading c until sp_loop_resume()).
 */
typedef int (*sp_request_fn)(struct sp_conn *c, const uint8_t *hdr,
                             size_t hdrlen, const uint8_t *body, size_t len);

/* Start the loop thread (before any spc_open). */
void sp_loop_init(void);
/* Serve a listening socket: framing IPC or TCP, messages up to maxmsg. */
void sp_loop_listen(int fd, int ipc, size_t maxmsg, sp_request_fn request);
/* Room for requests came (any thread): read the stalled connections. */
void sp_loop_resume(void);
/* Stop the thread and close every connection (at exit). */
void sp_loop_stop(void);
int sp_loop_epoll_fd(void);
void sp_loop_wake(void);

/* A request holds its connection from the call to its reply. */
void sp_conn_ref(struct sp_conn *c);
void sp_conn_unref(struct sp_conn *c);
/* Reply, from any thread; dropped if c closed meanwhile. */
void sp_conn_reply(struct sp_conn *c, const uint8_t *hdr, size_t hdrlen,
                   const void *body, size_t len);

/* The loop's side of spc. */
void spc_event(struct sp_item *item, uint32_t events);
int spc_poll(nng_time now);

#endif
