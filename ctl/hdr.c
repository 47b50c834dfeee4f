/*
 * hdr.c - the log-linear latency histogram of hdr.h.
 *
 * A value's bucket is found with one count-leading-zeros and two shifts, so
 * recording costs a few nanoseconds and never allocates; rzkvctl bench
 * keeps one per thread and merges them, which is exact because buckets
 * are fixed.
 */
#include "config.h"

#include <string.h>

#include "hdr.h"

#define SUB_COUNT   (1u << HDR_SUB_BITS)

void
hdr_reset(struct hdr *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

unsigned
hdr_bucket(uint64_t value)
{
    unsigned top, shift;

    if (value < HDR_LINEAR_MAX)
        return (unsigned)value;
    top = 63 - (unsigned)__builtin_clzll(value);    /* >= SUB_BITS + 1 */
    if (top >= HDR_TOP_BIT)
        return HDR_BUCKETS - 1;
    shift = top - HDR_SUB_BITS;
    return HDR_LINEAR_MAX + (top - HDR_SUB_BITS - 1) * SUB_COUNT +
           (unsigned)(value >> shift) - SUB_COUNT;
}

uint64_t
hdr_bucket_low(unsigned bucket)
{
    unsigned range, sub;

    if (bucket < HDR_LINEAR_MAX)
        return bucket;
    range = (bucket - HDR_LINEAR_MAX) / SUB_COUNT;
    sub = (bucket - HDR_LINEAR_MAX) % SUB_COUNT;
    return (uint64_t)(SUB_COUNT + sub) << (range + 1);
}

uint64_t
hdr_bucket_high(unsigned bucket)
{
    if (bucket < HDR_LINEAR_MAX)
        return bucket;
    if (bucket >= HDR_BUCKETS - 1)
        return UINT64_MAX;      /* also holds every value beyond the range */
    return hdr_bucket_low(bucket + 1) - 1;
}

void
hdr_record(struct hdr *h, uint64_t value)
{
    h->buckets[hdr_bucket(value)]++;
    h->count++;
    h->sum += (double)value;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void
hdr_merge(struct hdr *into, const struct hdr *from)
{
    if (from->count == 0)
        return;
    for (unsigned i = 0; i < HDR_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t
hdr_percentile(const struct hdr *h, double percentile)
{
    uint64_t rank, seen = 0;

    if (h->count == 0)
        return 0;
    if (percentile <= 0)
        return h->min;
    if (percentile >= 100)
        return h->max;
    /* The rank-th smallest value, 1-based; the small slack keeps 50% of
     * 10 at rank 5 despite rounding in percentile / 100. */
    rank = (uint64_t)(percentile / 100.0 * (double)h->count - 1e-9) + 1;
    if (rank > h->count)
        rank = h->count;
    for (unsigned i = 0; i < HDR_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t high = hdr_bucket_high(i);
            if (high > h->max)
                high = h->max;
            if (high < h->min)
                high = h->min;
            return high;
        }
    }
    return h->max;
}

double
hdr_mean(const struct hdr *h)
{
    return h->count == 0 ? 0.0 : h->sum / (double)h->count;
}
