/*
 * wire.h - protobuf-c messages in nng messages, and nng addresses.
 *
 * Every request is an Rzkv__Envelope and every answer an Rzkv__Reply
 * (api/rzkv.proto).  These helpers pack and unpack them, name message types
 * for logs, and turn the config's "host:port" into nng URLs.
 */
#ifndef RZKV_WIRE_H
#define RZKV_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "rzkv.pb-c.h"
#include "stamp.h"

/* Name of an envelope's message type, for logs ("cluster.get", ...). */
const char *wire_envelope_type_str(const Rzkv__Envelope *env);
const char *wire_status_str(Rzkv__Status status);

/* Pack a message into a new nng message; NULL on allocation failure. */
nng_msg *wire_pack(const ProtobufCMessage *msg);
/* Pack into an existing nng message (its body is replaced); 0 or nng error. */
int wire_pack_into(nng_msg *dst, const ProtobufCMessage *msg);

/*
 * Done with m: keep it, emptied, in *spare for the next message to be
 * packed into (no malloc then), if *spare is free and m's buffer is at
 * most max bytes; otherwise free it.
 */
void wire_msg_recycle(nng_msg **spare, nng_msg *m, size_t max);

/* Unpack; NULL if the bytes are not a valid message of that type. */
Rzkv__Envelope *wire_unpack_envelope(const nng_msg *msg);
Rzkv__Reply *wire_unpack_reply(const nng_msg *msg);

/* Pack a Reply carrying only a status and message into dst. */
int wire_pack_error(nng_msg *dst, Rzkv__Status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * An address as users write it ("host:port", ":port", or an nng URL such as
 * tcp://h:p, tls+tcp://h:p, ipc:///path) as an nng URL.  Returns 0, or -1
 * if it is not a valid address.
 */
int wire_address_url(const char *addr, char *url, size_t urllen);

/*
 * The wall clock in milliseconds since 1970, as ReplicaSet.expires_ms
 * counts it.  Never used to order versions: stamps do that.
 */
uint64_t wire_wall_ms(void);

/* Views of protobuf stamps and clocks as the pure types of stamp.h. */
struct stamp wire_stamp_view(const Rzkv__Stamp *s);
struct clock wire_clock_view(const Rzkv__Clock *c);

#endif
