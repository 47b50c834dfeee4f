/*
 * sp.h - nng's SP wire protocol, spoken by the coordinator itself.
 *
 * nng 1.5 hands every message between several threads on each side of
 * each hop, and on a small machine those handoffs cost more than the work
 * (bench/RESULTS.md).  So the coordinator does its socket I/O on one
 * epoll thread (coord_front.c) and speaks the protocol directly; its
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

void sp_put_be64(uint8_t *p, uint64_t v);
uint64_t sp_get_be64(const uint8_t *p);
void sp_put_be32(uint8_t *p, uint32_t v);
uint32_t sp_get_be32(const uint8_t *p);
void sp_handshake(uint8_t out[SP_HANDSHAKE_LEN], unsigned proto);
int sp_handshake_ok(const uint8_t *p, unsigned proto);
/* The length of the backtrace at the start of a message, or 0. */
size_t sp_backtrace_len(const uint8_t *p, size_t len);

/*
 * An SP REQ connection to one REP socket (a storage worker over IPC or a
 * peer node over TCP), dialed and redialed by the front thread.  Every
 * call but spc_open is made with lock held, and the callbacks run with it
 * held, on the front thread.
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

/* The front thread's side (coord_front.c). */
struct front_item;
void spc_event(struct front_item *item, uint32_t events);
int spc_poll(nng_time now);

#endif
