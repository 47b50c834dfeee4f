/*
 * sp.h - nng's SP wire protocol, spoken by the coordinator itself.
 *
 * nng 1.5 hands every message between several threads on each side of
 * each hop, and on a small machine those handoffs cost more than the work
 * (bench/RESULTS.md).  So the coordinator does its socket I/O on one
 * epoll thread (sp_loop.c) and speaks the protocol directly; its
 * peers, clients and storage workers are ordinary nng sockets and see no
 * difference.
 *
 * The protocol (nng's TCP and IPC transports, REQ/REP v0):
 *   - each side sends an 8-byte handshake: 00 'S' 'P' 00, its protocol
 *     number (16 bits, big-endian), 00 00;
 *   - then messages: over TCP a 64-bit big-endian length, over IPC the
 *     byte 0x01 and then that length; then the message, which starts with
 *     the REQ side's backtrace: 4-byte words, the last (the request id)
 *     with its high bit set, which the REP side returns in front of its
 *     reply.
 */
#ifndef RZKV_SP_H
#define RZKV_SP_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#define SP_PROTO_REQ        0x30    /* nng's REQ v0 */
#define SP_PROTO_REP        0x31    /* nng's REP v0 */
#define SP_HANDSHAKE_LEN    8
#define SP_MAX_BACKTRACE    32      /* 8 hops of 4 bytes, as nng allows */
#define SP_IPC_MSG          0x01

/* A byte buffer: data[off, len) is unread or unsent. */
struct buf {
    uint8_t *data;
    size_t off, len, cap;
};

int buf_reserve(struct buf *b, size_t more);
int buf_append(struct buf *b, const void *p, size_t n);
void buf_trim(struct buf *b);
void buf_free(struct buf *b);
/* Write what b holds to fd until done or the socket is full: 0, or -1
 * with errno on a broken connection. */
int buf_send(struct buf *b, int fd);

void sp_put_be64(uint8_t *p, uint64_t v);
uint64_t sp_get_be64(const uint8_t *p);
void sp_put_be32(uint8_t *p, uint32_t v);
uint32_t sp_get_be32(const uint8_t *p);
void sp_handshake(uint8_t out[SP_HANDSHAKE_LEN], unsigned proto);
/* A message's frame head for len bytes (backtrace included) into
 * head[SP_FRAME_HEAD_MAX]: the IPC type byte, then the length; its size. */
#define SP_FRAME_HEAD_MAX   9
size_t sp_frame_head(uint8_t *head, int ipc, uint64_t len);
int sp_handshake_ok(const uint8_t *p, unsigned proto);
/*
 * The next whole message framed in b, past its handshake: 1 with *msg,
 * *len (its bytes, backtrace first) and *framed (what it takes of b,
 * frame head included; b->off is not moved), 0 if it has not all arrived
 * (room for it is reserved), -1 if misframed or *len is over maxlen, -2
 * out of memory.
 */
int sp_frame_next(struct buf *b, int ipc, uint64_t maxlen,
                  const uint8_t **msg, uint64_t *len, size_t *framed);
/* The length of the backtrace at the start of a message, or 0. */
size_t sp_backtrace_len(const uint8_t *p, size_t len);

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
