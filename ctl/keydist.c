/*
 * keydist.c - random numbers and key distributions for rzkvctl bench.
 *
 * The Zipf sampler follows W. Hormann and G. Derflinger, "Rejection-
 * inversion to generate variates from monotone discrete distributions"
 * (ACM TOMACS 6(3), 1996), in the form Apache Commons RNG uses: invert
 * the integral H of the hat function h(x) = x^-s, round to the nearest
 * rank, and accept at once when the rank lies in the squeeze region (most
 * draws), else test u against H(k + 1/2) - h(k).
 */
#include "config.h"

#include <math.h>

#include "keydist.h"

/* ---- xoshiro256** --------------------------------------------------------- */

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void
rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t
rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double
rng_double(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t
rng_below(struct rng *r, uint64_t n)
{
    /* Lemire's multiply-shift: bias below 2^-64 * n, irrelevant here. */
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* ---- Zipf by rejection-inversion ------------------------------------------ */

/* log(1 + x) / x, stable near 0. */
static double
helper1(double x)
{
    if (fabs(x) > 1e-8)
        return log1p(x) / x;
    return 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x));
}

/* (exp(x) - 1) / x, stable near 0. */
static double
helper2(double x)
{
    if (fabs(x) > 1e-8)
        return expm1(x) / x;
    return 1 + x * 0.5 * (1 + x / 3 * (1 + 0.25 * x));
}

/* H(x) = (x^(1-s) - 1) / (1 - s), or log(x) when s = 1. */
static double
h_integral(const struct zipf *z, double x)
{
    double log_x = log(x);
    return helper2((1 - z->s) * log_x) * log_x;
}

static double
h(const struct zipf *z, double x)
{
    return exp(-z->s * log(x));
}

static double
h_integral_inverse(const struct zipf *z, double x)
{
    double t = x * (1 - z->s);
    if (t < -1)
        t = -1;     /* rounding only; keeps log1p defined */
    return exp(helper1(t) * x);
}

int
zipf_init(struct zipf *z, uint64_t n, double s)
{
    if (n == 0 || !(s > 0))
        return -1;
    z->n = n;
    z->s = s;
    z->h_integral_x1 = h_integral(z, 1.5) - 1;
    z->h_integral_n = h_integral(z, (double)n + 0.5);
    z->squeeze = 2 - h_integral_inverse(z, h_integral(z, 2.5) - h(z, 2));
    return 0;
}

uint64_t
zipf_next(const struct zipf *z, struct rng *r)
{
    for (;;) {
        double u = z->h_integral_n +
                   rng_double(r) * (z->h_integral_x1 - z->h_integral_n);
        double x = h_integral_inverse(z, u);
        double k = floor(x + 0.5);

        if (k < 1)
            k = 1;
        else if (k > (double)z->n)
            k = (double)z->n;
        if (k - x <= z->squeeze || u >= h_integral(z, k + 0.5) - h(z, k))
            return (uint64_t)k - 1;
    }
}

size_t
key_name(char *key, size_t cap, const char *prefix, size_t plen,
         uint64_t index)
{
    char digits[20];            /* UINT64_MAX has 20 */
    size_t nd = 0;

    do {
        digits[nd++] = (char)('0' + index % 10);
        index /= 10;
    } while (index != 0);
    while (nd < 10)
        digits[nd++] = '0';
    size_t len = 0;
    for (size_t i = 0; i < plen && len + 1 < cap; i++)
        key[len++] = prefix[i];
    while (nd > 0 && len + 1 < cap)
        key[len++] = digits[--nd];
    key[len] = '\0';
    return len;
}
