/*
 * batch.c - raw protobuf records for NodeBatch and NodeBatchReply.
 *
 * The coordinator sends one operation to several replicas and forwards
 * results it does not read; encoding each operation once and slicing
 * replies without unpacking them saves a copy and an allocation per
 * operation on the hot path.  Everything else uses protobuf-c.
 */
#include "config.h"

#include <string.h>

#include "batch.h"

size_t
batch_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

uint8_t *
batch_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

size_t
batch_record_len(unsigned field, size_t len)
{
    return batch_varint_len((uint64_t)field << 3 | PB_LEN) +
           batch_varint_len(len) + len;
}

uint8_t *
batch_put_header(uint8_t *p, unsigned field, size_t len)
{
    p = batch_put_varint(p, (uint64_t)field << 3 | PB_LEN);
    return batch_put_varint(p, len);
}

uint8_t *
batch_put_record(uint8_t *p, unsigned field, const void *data, size_t len)
{
    p = batch_put_header(p, field, len);
    if (len > 0)
        memcpy(p, data, len);
    return p + len;
}

static int
get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

int
batch_next_field(const uint8_t **p, const uint8_t *end, unsigned *field,
                 int *type, uint64_t *value, const uint8_t **data,
                 size_t *len)
{
    uint64_t tag, n;

    if (*p >= end)
        return 0;
    if (get_varint(p, end, &tag) != 0)
        return -1;
    if (tag >> 3 == 0 || tag >> 3 > 0x1fffffff)
        return -1;
    *field = (unsigned)(tag >> 3);
    *type = (int)(tag & 7);
    *value = 0;
    *data = NULL;
    *len = 0;
    switch (*type) {
    case PB_VARINT:
        return get_varint(p, end, value) == 0 ? 1 : -1;
    case PB_FIXED64:
        n = 8;
        break;
    case PB_FIXED32:
        n = 4;
        break;
    case PB_LEN:
        if (get_varint(p, end, &n) != 0)
            return -1;
        break;
    default:
        return -1;
    }
    if (n > (uint64_t)(end - *p))
        return -1;
    *data = *p;
    *len = (size_t)n;
    *p += n;
    return 1;
}

int
batch_scan_reply(const uint8_t *buf, size_t len, struct batch_reply *out)
{
    const uint8_t *p = buf, *end = buf + len, *data;
    unsigned field;
    int type, rv;
    uint64_t value;
    size_t n;

    memset(out, 0, sizeof(*out));
    while ((rv = batch_next_field(&p, end, &field, &type, &value, &data,
                                  &n)) == 1) {
        if (field == BATCH_REPLY_STATUS && type == PB_VARINT)
            out->status = value;
        else if (field == BATCH_REPLY_MESSAGE && type == PB_LEN) {
            out->message = data;
            out->message_len = n;
        } else if (field == BATCH_REPLY_NODE && type == PB_LEN) {
            /* A repeated embedded message may come in pieces (protobuf
             * merges them); we only ever see one from rzkv, so more than
             * one is treated as malformed rather than half-read. */
            if (out->results != NULL)
                return -1;
            out->results = data;
            out->results_len = n;
        }
    }
    return rv;
}

int
batch_next_result(const uint8_t **p, const uint8_t *end,
                  const uint8_t **rec, size_t *rec_len)
{
    unsigned field;
    int type, rv;
    uint64_t value;

    while ((rv = batch_next_field(p, end, &field, &type, &value, rec,
                                  rec_len)) == 1) {
        if (field == BATCH_RESULTS && type == PB_LEN)
            return 1;
    }
    return rv;
}
