/*
 * keydist.h - the key choosers of rzkvctl bench: a small fast random
 * generator, uniform or Zipf-distributed key indexes, and the keys'
 * names.
 */
#ifndef RZKV_KEYDIST_H
#define RZKV_KEYDIST_H

#include <stddef.h>
#include <stdint.h>

/* xoshiro256** seeded through splitmix64; one per thread, no locking. */
struct rng {
    uint64_t s[4];
};

void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
/* Uniform in [0, 1). */
double rng_double(struct rng *r);
/* Uniform in [0, n), n > 0, without modulo bias worth measuring. */
uint64_t rng_below(struct rng *r, uint64_t n);

/*
 * Zipf over ranks 1..n with P(k) proportional to k^-s, drawn by
 * rejection-inversion (Hormann and Derflinger, 1996): O(1) memory and
 * time, exact for any n and any s > 0, where a CDF table would need n
 * doubles.  keydist_next returns an index in [0, n): rank - 1, so index 0
 * is the most popular key.
 */
struct zipf {
    uint64_t n;
    double s;
    double h_integral_x1;
    double h_integral_n;
    double squeeze;
};

int zipf_init(struct zipf *z, uint64_t n, double s);
uint64_t zipf_next(const struct zipf *z, struct rng *r);

/*
 * Key number index as snprintf(key, cap, "%s%010" PRIu64, prefix, index)
 * writes it (plen = strlen(prefix), cap > 0), and its length, truncated
 * as snprintf truncates.  It was 4% of the bench's CPU as snprintf, and
 * the bench shares the machine with the cluster it measures.
 */
size_t key_name(char *key, size_t cap, const char *prefix, size_t plen,
                uint64_t index);

#endif
