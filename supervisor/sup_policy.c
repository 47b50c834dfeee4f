/*
 * sup_policy.c - the restart policy as pure arithmetic on times.
 *
 * NAME
 *	sup_policy - how long a slot waits before its next start, and when
 *	it has died too often
 * DESCRIPTION
 *	Kept apart from the event loop (sup_state.c) so that the rules of
 *	STYLE.md practice 7 can be unit-tested with made-up clocks
 *	(t/unit/test_sup_policy.c):
 *
 *	- the backoff starts at min, doubles at every death up to max, and
 *	  starts over at min when the process had been up reset_after;
 *	- whatever the backoff says, a slot is not started again within
 *	  min_interval of its last start (s6-supervise);
 *	- death_limit deaths within death_window mean the worker can't run
 *	  (s6-permafailon).
 *	Times are monotonic milliseconds.
 * SEE ALSO
 *	sup_state.c
 */
#include "config.h"

#include "sup.h"

const struct sup_backoff sup_default_backoff = {
    .min_ms = 100,
    .max_ms = 10000,
    .reset_after_ms = 30000,
    .min_interval_ms = 1000,
    .death_limit = 10,
    .death_window_ms = 60000,
};

int
sup_backoff_next(const struct sup_backoff *b, int *backoff_ms,
                 int64_t started_at, int64_t now)
{
    if (*backoff_ms <= 0 || now - started_at >= b->reset_after_ms)
        *backoff_ms = b->min_ms;
    else if (*backoff_ms < b->max_ms)
        *backoff_ms = *backoff_ms > b->max_ms / 2 ? b->max_ms
                                                  : *backoff_ms * 2;
    int64_t delay = *backoff_ms;
    int64_t floor = started_at + b->min_interval_ms - now;
    return (int)(delay > floor ? delay : floor);
}

int
sup_death_record(const struct sup_backoff *b, int64_t *deaths, int *ndeaths,
                 int64_t now)
{
    int limit = b->death_limit < SUP_DEATH_LIMIT_MAX ? b->death_limit
                                                     : SUP_DEATH_LIMIT_MAX;
    if (limit <= 0)
        return 0;
    deaths[*ndeaths % limit] = now;
    (*ndeaths)++;
    if (*ndeaths < limit)
        return 0;
    /* The next slot to overwrite holds the oldest of the last `limit`. */
    return now - deaths[*ndeaths % limit] < b->death_window_ms;
}
