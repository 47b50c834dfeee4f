/*
 * wire.c - packing rzkv protocol messages into nng messages.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "wire.h"

const char *
wire_envelope_type_str(const Rzkv__Envelope *env)
{
    switch (env->msg_case) {
    case RZKV__ENVELOPE__MSG_CLUSTER:
        switch (env->cluster->op_case) {
        case RZKV__CLUSTER_REQUEST__OP_GET: return "cluster.get";
        case RZKV__CLUSTER_REQUEST__OP_SET: return "cluster.set";
        case RZKV__CLUSTER_REQUEST__OP_DEL: return "cluster.del";
        case RZKV__CLUSTER_REQUEST__OP_INFO: return "cluster.info";
        default: return "cluster.unknown";
        }
    case RZKV__ENVELOPE__MSG_NODE: return "node.batch";
    case RZKV__ENVELOPE__MSG_LIST_KEYS: return "node.list_keys";
    case RZKV__ENVELOPE__MSG_NODE_INFO: return "node.info";
    case RZKV__ENVELOPE__MSG_HEALTH: return "health";
    default: return "unknown";
    }
}

const char *
wire_status_str(Rzkv__Status status)
{
    switch (status) {
    case RZKV__STATUS__OK: return "OK";
    case RZKV__STATUS__NOT_FOUND: return "NOT_FOUND";
    case RZKV__STATUS__UNAVAILABLE: return "UNAVAILABLE";
    case RZKV__STATUS__UNKNOWN: return "UNKNOWN";
    case RZKV__STATUS__INVALID: return "INVALID";
    case RZKV__STATUS__INTERNAL: return "INTERNAL";
    case RZKV__STATUS__UNSUPPORTED: return "UNSUPPORTED";
    case RZKV__STATUS__TOO_LARGE: return "TOO_LARGE";
    case RZKV__STATUS__STOPPING: return "STOPPING";
    default: return "STATUS?";
    }
}

int
wire_pack_into(nng_msg *dst, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    int rv;

    nng_msg_clear(dst);
    if ((rv = nng_msg_realloc(dst, len)) != 0)
        return rv;
    protobuf_c_message_pack(msg, nng_msg_body(dst));
    return 0;
}

nng_msg *
wire_pack(const ProtobufCMessage *msg)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, 0) != 0)
        return NULL;
    if (wire_pack_into(m, msg) != 0) {
        nng_msg_free(m);
        return NULL;
    }
    return m;
}

void
wire_msg_recycle(nng_msg **spare, nng_msg *m, size_t max)
{
    if (*spare == NULL && nng_msg_capacity(m) <= max) {
        nng_msg_clear(m);
        *spare = m;
    } else {
        nng_msg_free(m);
    }
}

Rzkv__Envelope *
wire_unpack_envelope(const nng_msg *msg)
{
    return rzkv__envelope__unpack(NULL, nng_msg_len(msg),
                                  nng_msg_body((nng_msg *)msg));
}

Rzkv__Reply *
wire_unpack_reply(const nng_msg *msg)
{
    return rzkv__reply__unpack(NULL, nng_msg_len(msg),
                               nng_msg_body((nng_msg *)msg));
}

int
wire_pack_error(nng_msg *dst, Rzkv__Status status, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);

    Rzkv__Reply reply = RZKV__REPLY__INIT;
    reply.status = status;
    reply.message = text;
    return wire_pack_into(dst, &reply.base);
}

int
wire_address_url(const char *addr, char *url, size_t urllen)
{
    static const char *const schemes[] = {
        "tcp://", "tcp4://", "tcp6://", "tls+tcp://", "ipc://", "inproc://",
    };
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(addr, schemes[i], n) == 0 && addr[n] != '\0') {
            if ((size_t)snprintf(url, urllen, "%s", addr) >= urllen)
                return -1;
            return 0;
        }
    }
    char host[256];
    int port;
    if (conf_parse_address(addr, host, sizeof(host), &port) != 0)
        return -1;
    int n = strchr(host, ':') != NULL
        ? snprintf(url, urllen, "tcp://[%s]:%d", host, port)
        : snprintf(url, urllen, "tcp://%s:%d", host, port);
    return n < 0 || (size_t)n >= urllen ? -1 : 0;
}

struct stamp
wire_stamp_view(const Rzkv__Stamp *s)
{
    struct stamp v = { 0, 0, NULL, 0, 0 };
    if (s != NULL) {
        v.epoch = s->epoch;
        v.counter = s->counter;
        v.writer = s->writer.data;
        v.writer_len = s->writer.len;
        v.nonce = s->nonce;
    }
    return v;
}

uint64_t
wire_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct clock
wire_clock_view(const Rzkv__Clock *c)
{
    struct clock v = { 0, 0 };
    if (c != NULL) {
        v.epoch = c->epoch;
        v.counter = c->counter;
    }
    return v;
}
