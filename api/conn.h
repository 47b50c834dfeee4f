/*
 * conn.h - librzkv's connections to nodes: nng's REQ protocol spoken on
 * one epoll thread of the client's own (common/spwire.h).
 *
 * A client's requests to a tcp:// or ipc:// address go through a conn:
 * the sending thread frames a request and writes it to the socket, and
 * the client's loop thread reads the replies and hands each to its
 * request's callback.  nng's REQ socket did the same with several thread
 * handoffs for each message, which cost a busy client more CPU than
 * everything else it did (bench/RESULTS.md).  TLS addresses still use nng.
 *
 * A conn connects when it is opened and again whenever a request finds it
 * down; requests wait for the connection up to their connect time, and
 * all that come while one attempt is under way share its outcome.
 *
 * Every request sent ends in exactly one call of its callback, on the
 * loop thread, never inside conn_send: with a reply (rv 0), or with an
 * nng error code and whether the request left (sent: a reply may still
 * have been on its way).  conn_abort ends one early.
 */
#ifndef RZKV_CONN_H
#define RZKV_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn_loop;
struct conn;
struct conn_req;

/* body is valid during the call only.  rv is 0 or an nng error code. */
typedef void (*conn_done_fn)(struct conn_req *r, int rv, bool sent,
                             const uint8_t *body, size_t len);

/* One request, embedded in the caller's own structure; idle between
 * requests.  The fields are the conn's. */
struct conn_req {
    struct conn_req *prev, *next;
    struct conn *conn;
    conn_done_fn done;
    int where;                  /* idle, waiting, sent or ended */
    uint32_t id;
    int rv;                     /* ended: why */
    bool sent;                  /* ended: whether it had left */
    uint64_t deadline;          /* ns, CLOCK_MONOTONIC; 0: none */
    unsigned answer_ms;         /* once sent; UINT_MAX: no limit */
    const uint8_t *msg;         /* the caller's, until done */
    size_t len;
};

/* CLOCK_MONOTONIC in ns: the clock of every deadline. */
uint64_t conn_now_ns(void);

/* The loop thread; 0, or an nng error code. */
int conn_loop_start(struct conn_loop **out);
/* Stop it, once no request is in flight on any of its conns; frees them. */
void conn_loop_stop(struct conn_loop *l);

/* A conn for url, if it is tcp://host:port (host resolved now) or
 * ipc://path; NULL if not (or out of memory): the caller uses nng. */
struct conn *conn_open(struct conn_loop *l, const char *url,
                       size_t recvmax);

/* Send msg[0..len) (kept by the caller until done): the connect time
 * counts while it waits for a connection, answer_ms from when it left. */
void conn_send(struct conn *c, struct conn_req *r, conn_done_fn done,
               const uint8_t *msg, size_t len, unsigned connect_ms,
               unsigned answer_ms);
/* End r with rv if it has not ended yet; its callback follows on the
 * loop thread. */
void conn_abort(struct conn_req *r, int rv);

#endif
