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

/*
 * A cluster's placement, also while its membership changes (DESIGN.md
 * section 2).  Each node is a member, joining or leaving.  A key's
 * replicas after the change are placed over the nodes that are not
 * leaving, before it over those that are not joining; while a node joins
 * or leaves, an operation needs a quorum of each of the two replica sets
 * (joint quorums), so it meets every operation made before the change and
 * every one made after it.  With no node joining or leaving the two sets
 * are one, and placement_locate() is ring_locate() over every node.
 */
enum place_state {
    PLACE_MEMBER = 0,
    PLACE_JOINING,
    PLACE_LEAVING,
};
#define PLACE_AFTER     1u      /* a replica by the placement after */
#define PLACE_BEFORE    2u      /* a replica by the placement before */

struct placement {
    struct ring after;          /* the nodes not leaving */
    struct ring before;         /* the nodes not joining (if changing) */
    size_t *after_node;         /* ring index -> node index, owned */
    size_t *before_node;
    size_t replicas;            /* replica_count */
    int changing;               /* some node joins or leaves */
};

/*
 * ids[i] and states[i] (NULL: all members) for count nodes; ids must
 * outlive p.  Returns 0, or -1 (ENOMEM).
 */
int placement_init(struct placement *p, uint32_t seed,
                   const char *const *ids, const uint8_t *states,
                   size_t count, size_t replicas);
void placement_free(struct placement *p);

/*
 * The key's replicas as node indexes, written to out[] (room for
 * 2 * replicas): first the placement after the change, best first, then
 * those of the placement before that are not among them.  in[i] (if not
 * NULL) gets PLACE_AFTER and/or PLACE_BEFORE for out[i].  Returns how many.
 */
size_t placement_locate(const struct placement *p, const void *key,
                        size_t len, size_t *out, uint8_t *in);

/* Which of `shards` storage workers holds the key on a node. */
unsigned ring_shard(const void *key, size_t len, unsigned shards);

/* 64-bit key hash used for listing keys by hash range (anti-entropy). */
uint64_t ring_key_hash(const void *key, size_t len);

#endif
