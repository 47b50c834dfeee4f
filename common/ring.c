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

/* The ring over the nodes whose state is not `skip`, and its index map. */
static int
subring_init(struct ring *ring, size_t **map, uint32_t seed,
             const char *const *ids, const uint8_t *states, size_t count,
             uint8_t skip)
{
    const char **sub = calloc(count ? count : 1, sizeof(*sub));
    size_t n = 0;

    *map = calloc(count ? count : 1, sizeof(**map));
    if (sub == NULL || *map == NULL) {
        free(sub);
        free(*map);
        *map = NULL;
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        if (states != NULL && states[i] == skip)
            continue;
        (*map)[n] = i;
        sub[n++] = ids[i];
    }
    int rv = ring_init(ring, seed, sub, n);     /* keeps ids[], not sub */
    free(sub);
    if (rv != 0) {
        free(*map);
        *map = NULL;
    }
    return rv;
}

int
placement_init(struct placement *p, uint32_t seed, const char *const *ids,
               const uint8_t *states, size_t count, size_t replicas)
{
    memset(p, 0, sizeof(*p));
    p->replicas = replicas;
    for (size_t i = 0; states != NULL && i < count; i++)
        if (states[i] != PLACE_MEMBER)
            p->changing = 1;
    if (subring_init(&p->after, &p->after_node, seed, ids, states, count,
                     PLACE_LEAVING) != 0)
        return -1;
    if (p->changing &&
        subring_init(&p->before, &p->before_node, seed, ids, states, count,
                     PLACE_JOINING) != 0) {
        placement_free(p);
        return -1;
    }
    return 0;
}

void
placement_free(struct placement *p)
{
    ring_free(&p->after);
    ring_free(&p->before);
    free(p->after_node);
    free(p->before_node);
    p->after_node = p->before_node = NULL;
}

size_t
placement_locate(const struct placement *p, const void *key, size_t len,
                 size_t *out, uint8_t *in)
{
    size_t idx[p->replicas ? p->replicas : 1];
    size_t n = ring_locate(&p->after, key, len, p->replicas, idx);

    for (size_t i = 0; i < n; i++) {
        out[i] = p->after_node[idx[i]];
        if (in != NULL)
            in[i] = PLACE_AFTER;
    }
    if (!p->changing)
        return n;
    size_t m = ring_locate(&p->before, key, len, p->replicas, idx);
    size_t total = n;
    for (size_t k = 0; k < m; k++) {
        size_t node = p->before_node[idx[k]], i;
        for (i = 0; i < n && out[i] != node; i++)
            ;
        if (i == n) {
            i = total++;
            out[i] = node;
            if (in != NULL)
                in[i] = 0;
        }
        if (in != NULL)
            in[i] |= PLACE_BEFORE;
    }
    return total;
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
