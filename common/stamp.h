/*
 * stamp.h - the order of versions and clocks (DESIGN.md section 2).
 *
 * A clock is (epoch, counter), compared lexicographically.  A stamp is
 * (epoch, counter, writer, nonce): writer is compared as bytes (shorter
 * first on a common prefix) and nonce as an integer, so the order of
 * stamps is total and every replica breaks ties the same way.
 *
 * Pure functions, no I/O.
 */
#ifndef RZKV_STAMP_H
#define RZKV_STAMP_H

#include <stddef.h>
#include <stdint.h>

struct clock {
    uint64_t epoch;
    uint64_t counter;
};

struct stamp {
    uint64_t epoch;
    uint64_t counter;
    const uint8_t *writer;      /* not owned */
    size_t writer_len;
    uint64_t nonce;
};

/* <0, 0, >0 as a is older than, equal to, newer than b. */
int clock_cmp(const struct clock *a, const struct clock *b);
int stamp_cmp(const struct stamp *a, const struct stamp *b);

/* Raise *c to at least (epoch, counter) of s; returns 1 if it moved. */
int clock_raise(struct clock *c, uint64_t epoch, uint64_t counter);

/*
 * Apply-if-newer: should an incoming version replace the held one?
 * held == NULL means nothing is held.  Equal stamps are not applied.
 * (A tombstone is just a version; it wins or loses by its stamp.)
 */
int stamp_should_apply(const struct stamp *held, const struct stamp *incoming);

/*
 * The clock a coordinator mints for a write, from the clocks of a quorum:
 * (max epoch seen, max counter under that epoch + 1).
 */
struct clock clock_next(const struct clock *seen, size_t n);

#endif
