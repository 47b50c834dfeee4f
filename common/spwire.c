/*
 * spwire.c - nng's SP wire protocol: byte buffers and framing (spwire.h).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "spwire.h"

/* A drained buffer bigger than this is given back (buf_trim). */
#define BUF_KEEP_MAX    (256 * 1024)

/* ---- byte buffers -------------------------------------------------------- */

int
buf_reserve(struct buf *b, size_t more)
{
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + more <= b->cap)
        return 0;
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + more <= b->cap)
            return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* A big buffer goes back to nothing once it is drained. */
void
buf_trim(struct buf *b)
{
    if (b->off == b->len && b->cap > BUF_KEEP_MAX)
        buf_free(b);
}

void
buf_free(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int
buf_send(struct buf *b, int fd)
{
    while (b->off < b->len) {
        /* send, not write: a client library must not raise SIGPIPE. */
        ssize_t w = send(fd, b->data + b->off, b->len - b->off,
                         MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno == EAGAIN ? 0 : -1;
        b->off += (size_t)w;
    }
    b->off = b->len = 0;
    return 0;
}

/* ---- framing ------------------------------------------------------------- */

void
sp_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint64_t
sp_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

void
sp_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint32_t
sp_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

size_t
sp_frame_head(uint8_t *head, int ipc, uint64_t len)
{
    size_t n = 0;
    if (ipc)
        head[n++] = SP_IPC_MSG;
    sp_put_be64(head + n, len);
    return n + 8;
}

int
sp_frame_next(struct buf *b, int ipc, uint64_t maxlen, const uint8_t **msg,
              uint64_t *len, size_t *framed)
{
    size_t head = ipc ? 9 : 8;
    size_t have = b->len - b->off;
    const uint8_t *p = b->data + b->off;

    if (have < head)
        return 0;
    *len = sp_get_be64(p + head - 8);
    if ((ipc && p[0] != SP_IPC_MSG) || *len > maxlen)
        return -1;
    if (have < head + *len)
        return buf_reserve(b, head + *len - have) == 0 ? 0 : -2;
    *msg = p + head;
    *framed = head + *len;
    return 1;
}

void
sp_handshake(uint8_t out[SP_HANDSHAKE_LEN], unsigned proto)
{
    static const uint8_t sp[4] = { 0, 'S', 'P', 0 };
    memcpy(out, sp, 4);
    out[4] = (uint8_t)(proto >> 8);
    out[5] = (uint8_t)proto;
    out[6] = out[7] = 0;
}

int
sp_handshake_ok(const uint8_t *p, unsigned proto)
{
    uint8_t want[SP_HANDSHAKE_LEN];
    sp_handshake(want, proto);
    return memcmp(p, want, 6) == 0;
}

size_t
sp_backtrace_len(const uint8_t *p, size_t len)
{
    for (size_t n = 4; n <= SP_MAX_BACKTRACE && n <= len; n += 4)
        if (p[n - 4] & 0x80)
            return n;
    return 0;
}
