/*
 * fuzz_reply.c - libFuzzer target: bytes off the wire as a Reply.
 *
 * Coordinators read replicas' NodeBatchReply results and merge them with
 * the quorum rules of worker/quorum.c; clients read ClusterReply and
 * ListKeysReply.  This unpacks arbitrary bytes with wire_unpack_reply(),
 * feeds a batch reply's results to a real read quorum as a coordinator
 * does (one replica per result: its entry's stamp, or absent), walks the
 * rest, and checks that what decoded encodes again.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "quorum.h"
#include "stamp.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void
merge_results(const Rzkv__NodeBatchReply *b)
{
    struct quorum q;
    unsigned n = b->n_results < QUORUM_MAX_REPLICAS
        ? (unsigned)b->n_results : QUORUM_MAX_REPLICAS;
    if (n == 0)
        return;
    quorum_init(&q, n, quorum_majority(n));
    for (unsigned i = 0; i < n; i++) {
        const Rzkv__NodeResult *r = b->results[i];
        sink += strlen(r->message != NULL ? r->message : "");
        if (r->status != RZKV__STATUS__OK &&
            r->status != RZKV__STATUS__NOT_FOUND) {
            quorum_fail(&q, i, wire_status_str(r->status));
            continue;
        }
        if (r->entry != NULL && r->entry->stamp != NULL) {
            struct stamp st = wire_stamp_view(r->entry->stamp);
            quorum_answer(&q, i, &st);
        } else {
            quorum_answer(&q, i, NULL);
        }
    }
    sink += (size_t)quorum_read_state(&q) + quorum_answered(&q);
    char text[256];
    const char *names[QUORUM_MAX_REPLICAS];
    for (unsigned i = 0; i < n; i++)
        names[i] = "node";
    quorum_describe(&q, names, text, sizeof(text));
    quorum_free(&q);
}

static void
walk(const Rzkv__Reply *r)
{
    sink += strlen(wire_status_str(r->status));
    switch (r->body_case) {
    case RZKV__REPLY__BODY_NODE:
        merge_results(r->node);
        break;
    case RZKV__REPLY__BODY_CLUSTER:
        if (r->cluster->stamp != NULL) {
            struct stamp st = wire_stamp_view(r->cluster->stamp);
            sink += st.writer_len;
        }
        sink += r->cluster->value.len;
        if (r->cluster->info != NULL)
            for (size_t i = 0; i < r->cluster->info->n_nodes; i++)
                sink += strlen(r->cluster->info->nodes[i]->id);
        break;
    case RZKV__REPLY__BODY_LIST_KEYS:
        for (size_t i = 0; i < r->list_keys->n_entries; i++) {
            const Rzkv__Entry *e = r->list_keys->entries[i];
            sink += e->key.len;
            if (e->stamp != NULL) {
                struct stamp a = wire_stamp_view(e->stamp);
                sink += (size_t)stamp_cmp(&a, &a);
            }
        }
        break;
    case RZKV__REPLY__BODY_NODE_INFO:
        for (size_t i = 0; i < r->node_info->n_workers; i++)
            sink += strlen(r->node_info->workers[i]->role);
        break;
    default:
        break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nng_msg *msg;
    if (nng_msg_alloc(&msg, 0) != 0 || nng_msg_append(msg, data, size) != 0)
        return 0;
    Rzkv__Reply *r = wire_unpack_reply(msg);
    nng_msg_free(msg);
    if (r == NULL)
        return 0;
    walk(r);
    /* What decoded must encode (decoding it again may fail only for
     * protobuf-c's field-0 quirk, see fuzz_envelope.c). */
    nng_msg *again = wire_pack(&r->base);
    if (again == NULL)
        abort();
    Rzkv__Reply *back = wire_unpack_reply(again);
    if (back != NULL)
        rzkv__reply__free_unpacked(back, NULL);
    nng_msg_free(again);
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}
