/*
 * batch.h - NodeBatch requests and NodeBatchReply answers as raw
 * protobuf records, without a full pack or unpack.
 *
 * A protobuf message is a sequence of fields, and a repeated message
 * field is one length-delimited record per element.  So
 *
 *   Envelope{node: NodeBatch{ops: [a, b, c]}}
 *     = tag(2, LEN) len(batch) | tag(1, LEN) len(a) a | tag(1, LEN) ... c
 *
 * and a batch is built by appending operations that were packed once (a
 * value written to three replicas is encoded once, not three times), and
 * a reply is split into its NodeResult records, which a coordinator that
 * only forwards them copies as they are.  Pure functions, no I/O.
 */
#ifndef RZKV_BATCH_H
#define RZKV_BATCH_H

#include <stddef.h>
#include <stdint.h>

enum {
    PB_VARINT = 0,
    PB_FIXED64 = 1,
    PB_LEN = 2,
    PB_FIXED32 = 5,
};

/* Field numbers used here (api/rzkv.proto). */
enum {
    BATCH_ENVELOPE_NODE = 2,        /* Envelope.node */
    BATCH_OPS = 1,                  /* NodeBatch.ops */
    BATCH_REPLY_STATUS = 1,         /* Reply.status */
    BATCH_REPLY_MESSAGE = 2,        /* Reply.message */
    BATCH_REPLY_NODE = 11,          /* Reply.node */
    BATCH_RESULTS = 1,              /* NodeBatchReply.results */
};

size_t batch_varint_len(uint64_t v);
uint8_t *batch_put_varint(uint8_t *p, uint64_t v);
/* Bytes of a length-delimited record of a field holding len bytes. */
size_t batch_record_len(unsigned field, size_t len);
/* Write the tag and length of such a record; the caller adds the bytes. */
uint8_t *batch_put_header(uint8_t *p, unsigned field, size_t len);
/* Write a whole record. */
uint8_t *batch_put_record(uint8_t *p, unsigned field, const void *data,
                          size_t len);

/*
 * Read one field at *p (before end): its number, wire type, and for LEN
 * its bytes, for VARINT its value.  Advances *p.  Returns 1, 0 at the
 * end, -1 if malformed.
 */
int batch_next_field(const uint8_t **p, const uint8_t *end, unsigned *field,
                     int *type, uint64_t *value, const uint8_t **data,
                     size_t *len);

/* A Reply, scanned: status, message and the NodeBatchReply body. */
struct batch_reply {
    uint64_t status;
    const uint8_t *message;
    size_t message_len;
    const uint8_t *results;         /* NodeBatchReply bytes, or NULL */
    size_t results_len;
};

/* 0, or -1 if buf is not a valid Reply. */
int batch_scan_reply(const uint8_t *buf, size_t len, struct batch_reply *out);

/*
 * Next NodeResult record in a NodeBatchReply body: 1 with *rec, *rec_len
 * set, 0 at the end, -1 if malformed.  Unknown fields are skipped.
 */
int batch_next_result(const uint8_t **p, const uint8_t *end,
                      const uint8_t **rec, size_t *rec_len);

#endif
