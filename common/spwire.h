/*
 * spwire.h - nng's SP wire protocol: framing and byte buffers.
 *
 * nng 1.5 hands every message between several threads on each side of
 * each hop, and on a small machine those handoffs cost more than the work
 * (bench/RESULTS.md).  So rzkv speaks the protocol itself where it
 * matters: the coordinator (worker/sp.c, worker/sp_loop.c) and the client
 * library (api/conn.c).  Their peers may be ordinary nng sockets and see
 * no difference.
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
#ifndef RZKV_SPWIRE_H
#define RZKV_SPWIRE_H

#include <stddef.h>
#include <stdint.h>

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
/* Write what b holds to the socket fd until done or the socket is full
 * (then b->off < b->len): 0, or -1 with errno on a broken connection. */
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

#endif
