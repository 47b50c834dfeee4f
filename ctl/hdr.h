/*
 * hdr.h - a log-linear latency histogram in the manner of HdrHistogram:
 * fixed memory, bounded relative error, mergeable.
 *
 * Values are unsigned 64-bit integers (rzkvctl bench records nanoseconds).
 * Values below 256 are counted exactly; above, each power-of-two range is
 * cut into 128 equal buckets, so a bucket is at most 1/128 (0.8%) of the
 * values it holds wide.  Values of 2^40 and more (18 minutes in ns) are
 * counted in the top bucket; min, max and the sum stay exact.
 */
#ifndef RZKV_HDR_H
#define RZKV_HDR_H

#include <stdint.h>

#define HDR_SUB_BITS        7                   /* 128 buckets a range */
#define HDR_LINEAR_MAX      (1u << (HDR_SUB_BITS + 1))  /* exact below */
#define HDR_TOP_BIT         40                  /* values < 2^40 resolved */
#define HDR_BUCKETS \
    (HDR_LINEAR_MAX + (HDR_TOP_BIT - HDR_SUB_BITS - 1) * (1u << HDR_SUB_BITS))

struct hdr {
    uint64_t count;
    uint64_t min;               /* UINT64_MAX while empty */
    uint64_t max;
    double sum;                 /* for the mean; doubles do not overflow */
    uint64_t buckets[HDR_BUCKETS];
};

void hdr_reset(struct hdr *h);
void hdr_record(struct hdr *h, uint64_t value);
/* into += from */
void hdr_merge(struct hdr *into, const struct hdr *from);
/*
 * The value at a percentile (0..100]: the highest value of the bucket that
 * holds the ceil(p% * count)-th smallest value, never above the exact max
 * (so percentile 100 is the max).  0 if the histogram is empty.
 */
uint64_t hdr_percentile(const struct hdr *h, double percentile);
double hdr_mean(const struct hdr *h);

/* The bucket of a value and the range of values it holds (for tests). */
unsigned hdr_bucket(uint64_t value);
uint64_t hdr_bucket_low(unsigned bucket);
uint64_t hdr_bucket_high(unsigned bucket);

#endif
