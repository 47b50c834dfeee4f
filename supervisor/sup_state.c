/*
 * sup_state.c - the states of slots and of the node, and the restart
 * policy: the supervisor's lifecycle on one screen.
 *
 * NAME
 *	sup_state - what happens when a worker starts, becomes ready or dies
 * DESCRIPTION
 *	Slot states (sup.h has the diagram):
 *
 *	event                  in state            goes to   and
 *	spawn                  STOPPED, BACKOFF    STARTING  fork+exec
 *	"ready" on channel     STARTING            READY     node may serve
 *	death, node running    STARTING, READY     BACKOFF   timer: backoff
 *	death, exit 78         STARTING, READY     FAILED    never restarted
 *	death, too many        STARTING, READY     FAILED    never restarted
 *	backoff timer          BACKOFF             STARTING  fork+exec
 *	node stops             any running         STOPPING  "stop", escalate
 *	death, node stopping   any                 STOPPED   next stop phase
 *
 *	Node states: STARTING until every worker has been ready once, then
 *	SERVING while every worker is ready, DEGRADED while some is not (or
 *	failed before the node ever served), STOPPING at the end.  Storage
 *	workers start first; the coordinators once all of them are ready
 *	(they need storage to serve); each listens on the node's address when
 *	it is ready, and the address stays bound through restarts.
 *
 *	The restart delay (practice 7 of STYLE.md) starts at 100 ms, doubles
 *	at every death up to 10 s and falls back to 100 ms after 30 s of
 *	uptime; whatever it says, a slot is not started twice within a second
 *	(s6).  A worker that exits with RZKV_EXIT_CONFIG (78) would fail the
 *	same way again, and 10 deaths within 60 s show a worker that can't
 *	run: both leave the slot FAILED, shown by status and logged with the
 *	reason, until rzkvd is restarted.
 * SEE ALSO
 *	sup_spawn.c, sup_reap.c, sup_stop.c
 */
#include "config.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "log.h"
#include "sup.h"

int64_t
sup_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *
child_state_str(enum child_state st)
{
    switch (st) {
    case CHILD_STOPPED:  return "stopped";
    case CHILD_STARTING: return "starting";
    case CHILD_READY:    return "ready";
    case CHILD_BACKOFF:  return "backoff";
    case CHILD_FAILED:   return "failed";
    case CHILD_STOPPING: return "stopping";
    }
    return "unknown";
}

const char *
sup_state_str(enum sup_state st)
{
    switch (st) {
    case SUP_STARTING: return "starting";
    case SUP_SERVING:  return "serving";
    case SUP_DEGRADED: return "degraded";
    case SUP_STOPPING: return "stopping";
    }
    return "unknown";
}

static void child_timer_cb(evutil_socket_t fd, short what, void *arg);

void
sup_groups_init(struct sup *s)
{
    const int counts[SUP_NROLES] = { s->node->storage_workers,
                                     s->node->coordinator_workers };
    const char *names[SUP_NROLES] = { ROLE_STORAGE, ROLE_COORDINATOR };

    for (int r = 0; r < SUP_NROLES; r++) {
        struct sup_group *g = &s->groups[r];
        g->sup = s;
        g->role = (enum sup_role)r;
        g->name = names[r];
        g->count = counts[r];
        g->backoff = sup_default_backoff;
        g->children = calloc((size_t)g->count, sizeof(*g->children));
        if (g->children == NULL)
            fatal("calloc");
        for (int i = 0; i < g->count; i++) {
            struct sup_child *c = &g->children[i];
            c->group = g;
            c->instance = i;
            c->chan_fd = -1;
            c->last_status = -1;
            c->timer = evtimer_new(s->base, child_timer_cb, c);
            if (c->timer == NULL)
                fatalx("evtimer_new failed");
        }
    }
}

void
sup_groups_free(struct sup *s)
{
    for (int r = 0; r < SUP_NROLES; r++) {
        struct sup_group *g = &s->groups[r];
        for (int i = 0; i < g->count; i++) {
            sup_chan_close(&g->children[i]);
            event_free(g->children[i].timer);
        }
        free(g->children);
        g->children = NULL;
    }
}

void
sup_child_set_state(struct sup_child *c, enum child_state st)
{
    if (c->state != st)
        log_debug("%s[%d]: %s -> %s", c->group->name, c->instance,
                  child_state_str(c->state), child_state_str(st));
    c->state = st;
}

/* Start a slot now; if fork fails, try again after the backoff delay. */
static void
child_start(struct sup_child *c)
{
    if (sup_spawn(c) == 0)
        return;
    int delay = sup_child_backoff_ms(c, sup_now_ms());
    struct timeval tv = { delay / 1000, (delay % 1000) * 1000 };
    sup_child_set_state(c, CHILD_BACKOFF);
    evtimer_add(c->timer, &tv);
}

void
sup_start_group(struct sup_group *g)
{
    for (int i = 0; i < g->count; i++)
        child_start(&g->children[i]);
}

/*
 * The slot's timer: in BACKOFF it restarts the slot; for a running
 * process it is the grace period after the process closed its channel
 * without exiting (a worker we can no longer talk to is killed).
 */
static void
child_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sup_child *c = arg;
    (void)fd; (void)what;

    if (c->state == CHILD_BACKOFF) {
        c->restarts++;
        child_start(c);
        return;
    }
    if (c->pid > 0 && c->chan_fd < 0) {
        log_warnx("%s[%d] pid %ld closed its status channel but did not "
                  "exit: killing it", c->group->name, c->instance,
                  (long)c->pid);
        sup_kill(c, SIGKILL);
    }
}

void
sup_child_ready(struct sup_child *c)
{
    if (c->state != CHILD_STARTING)
        return;
    c->ready_at = sup_now_ms();
    sup_child_set_state(c, CHILD_READY);
    log_info("%s[%d] pid %ld ready after %lld ms", c->group->name,
             c->instance, (long)c->pid,
             (long long)(c->ready_at - c->started_at));
    sup_update_state(c->group->sup);
}

/* The delay before the next start of c, advancing its backoff. */
int
sup_child_backoff_ms(struct sup_child *c, int64_t now)
{
    return sup_backoff_next(&c->group->backoff, &c->backoff_ms,
                            c->started_at, now);
}

static void
child_fail(struct sup_child *c, const char *why)
{
    snprintf(c->fail_reason, sizeof(c->fail_reason), "%s", why);
    sup_child_set_state(c, CHILD_FAILED);
    log_error("%s[%d] %s: not restarting it (restart rzkvd once the cause "
              "is fixed)", c->group->name, c->instance, why);
}

/* A process of slot c is gone (sup_reap.c has logged how). */
void
sup_child_died(struct sup_child *c, int status)
{
    struct sup *s = c->group->sup;
    int64_t now = sup_now_ms();
    char why[96];

    c->pid = 0;
    c->sent_signal = 0;
    c->ready_at = 0;
    c->last_status = status;
    sup_describe_exit(status, c->last_exit, sizeof(c->last_exit));
    sup_chan_close(c);
    evtimer_del(c->timer);

    if (s->state == SUP_STOPPING) {
        sup_child_set_state(c, CHILD_STOPPED);
        sup_stop_progress(s);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == RZKV_EXIT_CONFIG) {
        child_fail(c, "exited with status 78 (configuration or data "
                   "error, see its log lines above)");
    } else if (sup_death_record(&c->group->backoff, c->deaths, &c->ndeaths,
                                now)) {
        snprintf(why, sizeof(why), "died %d times within %d s",
                 c->group->backoff.death_limit,
                 c->group->backoff.death_window_ms / 1000);
        child_fail(c, why);
    } else {
        int delay = sup_child_backoff_ms(c, now);
        struct timeval tv = { delay / 1000, (delay % 1000) * 1000 };
        sup_child_set_state(c, CHILD_BACKOFF);
        evtimer_add(c->timer, &tv);
        log_info("restarting %s[%d] in %d ms", c->group->name, c->instance,
                 delay);
    }
    sup_update_state(s);
}

int
sup_group_alive(const struct sup_group *g)
{
    int n = 0;
    for (int i = 0; i < g->count; i++)
        if (g->children[i].pid > 0)
            n++;
    return n;
}

static int
group_all_ready(const struct sup_group *g)
{
    for (int i = 0; i < g->count; i++)
        if (g->children[i].state != CHILD_READY)
            return 0;
    return 1;
}

static int
any_failed(const struct sup *s)
{
    for (int r = 0; r < SUP_NROLES; r++)
        for (int i = 0; i < s->groups[r].count; i++)
            if (s->groups[r].children[i].state == CHILD_FAILED)
                return 1;
    return 0;
}

/* The first time every worker is ready (the coordinators listen now). */
static void
node_first_ready(struct sup *s)
{
    s->served = 1;
    log_info("node %s serving on %s after %lld ms", s->node->id,
             s->node->local_address,
             (long long)(sup_now_ms() - s->started_at));
}

/* Recompute the node's state after a slot changed. */
void
sup_update_state(struct sup *s)
{
    if (s->state == SUP_STOPPING)
        return;
    if (!s->coordinators_started && group_all_ready(&s->groups[SUP_STORAGE])) {
        s->coordinators_started = 1;
        sup_start_group(&s->groups[SUP_COORD]);
    }
    enum sup_state next;
    if (s->coordinators_started && group_all_ready(&s->groups[SUP_STORAGE]) &&
        group_all_ready(&s->groups[SUP_COORD]))
        next = SUP_SERVING;
    else if (s->served || any_failed(s))
        next = SUP_DEGRADED;
    else
        next = SUP_STARTING;
    if (next == s->state)
        return;
    if (next == SUP_SERVING && !s->served) {
        node_first_ready(s);
        if (s->state == SUP_STOPPING)
            return;
    } else if (next == SUP_SERVING) {
        log_info("node %s serving again", s->node->id);
    } else if (next == SUP_DEGRADED) {
        log_warnx("node %s degraded: not every worker is ready",
                  s->node->id);
    }
    s->state = next;
}
