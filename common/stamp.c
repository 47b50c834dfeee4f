/*
 * stamp.c - ordering of clocks and stamps.
 */
#include "config.h"

#include <string.h>

#include "stamp.h"

static int
u64_cmp(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b;
}

int
clock_cmp(const struct clock *a, const struct clock *b)
{
    int c = u64_cmp(a->epoch, b->epoch);
    return c != 0 ? c : u64_cmp(a->counter, b->counter);
}

int
stamp_cmp(const struct stamp *a, const struct stamp *b)
{
    int c = u64_cmp(a->epoch, b->epoch);
    if (c == 0)
        c = u64_cmp(a->counter, b->counter);
    if (c == 0) {
        size_t n = a->writer_len < b->writer_len ? a->writer_len
                                                 : b->writer_len;
        c = n ? memcmp(a->writer, b->writer, n) : 0;
        c = c < 0 ? -1 : c > 0;
        if (c == 0)
            c = u64_cmp(a->writer_len, b->writer_len);
    }
    if (c == 0)
        c = u64_cmp(a->nonce, b->nonce);
    return c;
}

int
clock_raise(struct clock *c, uint64_t epoch, uint64_t counter)
{
    struct clock s = { epoch, counter };
    if (clock_cmp(&s, c) <= 0)
        return 0;
    *c = s;
    return 1;
}

int
stamp_should_apply(const struct stamp *held, const struct stamp *incoming)
{
    return held == NULL || stamp_cmp(incoming, held) > 0;
}

struct clock
clock_next(const struct clock *seen, size_t n)
{
    struct clock max = { 0, 0 };
    for (size_t i = 0; i < n; i++)
        if (clock_cmp(&seen[i], &max) > 0)
            max = seen[i];
    max.counter++;
    return max;
}
