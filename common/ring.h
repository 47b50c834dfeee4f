/*
 * ring.h - rendezvous (highest random weight) placement, exactly as the
 * original system computes it:
 *
 *   node_hash(id)    = MurmurHash3_x86_32(id, seed = cluster seed)
 *   score(key, node) = first 64-bit word of
 *                      MurmurHash3_x64_128(key, seed = node_hash(id))
 *
 * A key's replicas are the replica_count nodes with the highest scores,
 * highest first; a tie goes to the smaller id, compared as bytes.
 *
 * Within a node, keys are spread over its storage workers by
 * ring_shard(): MurmurHash3_x86_32(key, seed = RING_SHARD_SEED) modulo the
 * worker count.  That function is part of the on-disk format: changing it
 * (or the worker count) moves keys between shard files.
 *
 * Pure functions, no I/O.
 */
#ifndef RZKV_RING_H
#define RZKV_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_SHARD_SEED 0x727a6b76u     /* "rzkv" */

struct ring_node {
    const char *id;             /* not owned */
    size_t id_len;
    uint32_t hash;              /* node_hash(id) */
};

struct ring {
    uint32_t seed;
    size_t count;
    struct ring_node *nodes;    /* owned */
};

/* Returns 0, or -1 (ENOMEM).  ids must outlive the ring. */
int ring_init(struct ring *ring, uint32_t seed, const char *const *ids,
              size_t count);
void ring_free(struct ring *ring);

uint32_t ring_node_hash(uint32_t seed, const void *id, size_t len);
uint64_t ring_score(uint32_t node_hash, const void *key, size_t len);

/*
 * Writes the indexes (into ring->nodes) of the key's first `want` replicas,
 * best first, to out[]; returns how many were written (min(want, count)).
 */
size_t ring_locate(const struct ring *ring, const void *key, size_t len,
                   size_t want, size_t *out);

/* Which of `shards` storage workers holds the key on a node. */
unsigned ring_shard(const void *key, size_t len, unsigned shards);

/* 64-bit key hash used for listing keys by hash range (anti-entropy). */
uint64_t ring_key_hash(const void *key, size_t len);

#endif
