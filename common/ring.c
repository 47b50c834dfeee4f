/*
 * ring.c - rendezvous placement over MurmurHash3 (Debian's libmurmurhash).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <murmurhash.h>

#include "ring.h"

uint32_t
ring_node_hash(uint32_t seed, const void *id, size_t len)
{
    uint32_t out[1];
    lmmh_x86_32(id, (unsigned int)len, seed, out);
    return out[0];
}

uint64_t
ring_score(uint32_t node_hash, const void *key, size_t len)
{
    uint64_t out[2];
    lmmh_x64_128(key, (unsigned int)len, node_hash, out);
    return out[0];
}

int
ring_init(struct ring *ring, uint32_t seed, const char *const *ids,
          size_t count)
{
    ring->seed = seed;
    ring->count = count;
    ring->nodes = calloc(count ? count : 1, sizeof(*ring->nodes));
    if (ring->nodes == NULL)
        return -1;
    for (size_t i = 0; i < count; i++) {
        ring->nodes[i].id = ids[i];
        ring->nodes[i].id_len = strlen(ids[i]);
        ring->nodes[i].hash = ring_node_hash(seed, ids[i],
                                             ring->nodes[i].id_len);
    }
    return 0;
}

void
ring_free(struct ring *ring)
{
    free(ring->nodes);
    ring->nodes = NULL;
    ring->count = 0;
}

/* Is node a ranked before node b for this key? */
static int
ranks_before(const struct ring_node *a, uint64_t sa,
             const struct ring_node *b, uint64_t sb)
{
    if (sa != sb)
        return sa > sb;
    size_t n = a->id_len < b->id_len ? a->id_len : b->id_len;
    int c = memcmp(a->id, b->id, n);
    if (c != 0)
        return c < 0;
    return a->id_len < b->id_len;
}

size_t
ring_locate(const struct ring *ring, const void *key, size_t len,
            size_t want, size_t *out)
{
    /* Partial selection: keep the best `want` in out[], sorted. */
    uint64_t best[want ? want : 1];
    size_t have = 0;

    if (want > ring->count)
        want = ring->count;
    for (size_t i = 0; i < ring->count; i++) {
        uint64_t s = ring_score(ring->nodes[i].hash, key, len);
        size_t pos = have;
        while (pos > 0 && ranks_before(&ring->nodes[i], s,
                                       &ring->nodes[out[pos - 1]],
                                       best[pos - 1]))
            pos--;
        if (pos >= want)
            continue;
        size_t last = have < want ? have : want - 1;
        for (size_t j = last; j > pos; j--) {
            out[j] = out[j - 1];
            best[j] = best[j - 1];
        }
        out[pos] = i;
        best[pos] = s;
        if (have < want)
            have++;
    }
    return have;
}

unsigned
ring_shard(const void *key, size_t len, unsigned shards)
{
    if (shards <= 1)
        return 0;
    return ring_node_hash(RING_SHARD_SEED, key, len) % shards;
}

uint64_t
ring_key_hash(const void *key, size_t len)
{
    return ring_score(RING_SHARD_SEED, key, len);
}
