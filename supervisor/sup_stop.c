/*
 * sup_stop.c - stop the node in order, with deadlines.
 *
 * NAME
 *	sup_stop - close the front door, stop coordinators, then storage
 * DESCRIPTION
 *	On SIGTERM, SIGINT or "stop" on the control socket: no new client
 *	connections (the front door listener closes first), then the
 *	coordinators get "stop" and finish what they have in flight, then the
 *	storage workers, which commit and close their databases; storage goes
 *	last because coordinators' in-flight requests need it.  Each phase
 *	escalates like nginx: "stop" on the channel, SIGTERM after
 *	STOP_TERM_MS, SIGKILL after STOP_KILL_MS, so the whole stop takes at
 *	most about 5 s.  Slots waiting for a restart are simply cancelled.
 *	When the last storage worker is gone the event loop ends and
 *	sup_main() removes the sockets, the active cluster copy and the
 *	pidfile.  Should any of that hang (a library call that never
 *	returns), a watchdog alarm ends rzkvd after STOP_WATCHDOG_S with exit
 *	status 1 (Postfix master_sigdeath's killme_after); the workers die
 *	with it (PR_SET_PDEATHSIG) and the next start removes the leftovers.
 * SEE ALSO
 *	sup_main.c, sup_state.c
 */
#include "config.h"

#include <event2/event.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sup.h"

#define STOP_TERM_MS    1500    /* after "stop": SIGTERM */
#define STOP_KILL_MS    1000    /* after SIGTERM: SIGKILL */
#define STOP_WATCHDOG_S 20      /* after the stop began: give up */

/*
 * WARNING: signal context.  Only async-signal-safe calls: no logging (the
 * log lock may be held by the very call that hangs), no stdio.
 */
static void
stop_watchdog(int sig)
{
    static const char msg[] =
        "rzkvd: the stop did not finish in time, exiting now\n";
    (void)sig;
    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
        _exit(RZKV_EXIT_FATAL);
    _exit(RZKV_EXIT_FATAL);
}

static void
arm_watchdog(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = stop_watchdog;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(STOP_WATCHDOG_S);
}

static void stop_timer_cb(evutil_socket_t fd, short what, void *arg);

static struct sup_group *
phase_group(struct sup *s)
{
    return s->stop_phase == STOP_COORDINATORS ? &s->groups[SUP_COORD]
                                              : &s->groups[SUP_STORAGE];
}

static void
arm(struct sup *s, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(s->stop_timer, &tv);
}

static void
phase_begin(struct sup *s, enum sup_stop_phase phase)
{
    s->stop_phase = phase;
    s->stop_escalation = 0;
    struct sup_group *g = phase_group(s);
    for (int i = 0; i < g->count; i++) {
        struct sup_child *c = &g->children[i];
        if (c->pid <= 0)
            continue;
        sup_child_set_state(c, CHILD_STOPPING);
        sup_send(c, "stop\n");
    }
    if (sup_group_alive(g) > 0) {
        log_info("stopping %d %s worker(s)", sup_group_alive(g), g->name);
        arm(s, STOP_TERM_MS);
    }
}

void
sup_stop(struct sup *s, const char *why)
{
    if (s->state == SUP_STOPPING) {
        log_info("%s: already stopping", why);
        return;
    }
    log_info("stopping node %s: %s", s->node->id, why);
    s->state = SUP_STOPPING;
    arm_watchdog();
    sup_front_close_listener(s);
    for (int r = 0; r < SUP_NROLES; r++)
        for (int i = 0; i < s->groups[r].count; i++) {
            struct sup_child *c = &s->groups[r].children[i];
            if (c->state == CHILD_BACKOFF) {
                evtimer_del(c->timer);
                sup_child_set_state(c, CHILD_STOPPED);
            }
        }
    s->stop_timer = evtimer_new(s->base, stop_timer_cb, s);
    if (s->stop_timer == NULL)
        fatalx("evtimer_new failed");
    phase_begin(s, STOP_COORDINATORS);
    sup_stop_progress(s);
}

/* A worker died while stopping: move to the next phase when one is done. */
void
sup_stop_progress(struct sup *s)
{
    if (s->state != SUP_STOPPING || s->stop_phase == STOP_DONE)
        return;
    while (sup_group_alive(phase_group(s)) == 0) {
        evtimer_del(s->stop_timer);
        if (s->stop_phase == STOP_STORAGE) {
            s->stop_phase = STOP_DONE;
            event_free(s->stop_timer);
            s->stop_timer = NULL;
            event_base_loopbreak(s->base);
            return;
        }
        phase_begin(s, STOP_STORAGE);
    }
}

static void
stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sup *s = arg;
    struct sup_group *g = phase_group(s);
    (void)fd; (void)what;

    s->stop_escalation++;
    int sig = s->stop_escalation == 1 ? SIGTERM : SIGKILL;
    for (int i = 0; i < g->count; i++) {
        struct sup_child *c = &g->children[i];
        if (c->pid <= 0)
            continue;
        log_warnx("%s[%d] pid %ld still running: sending %s", g->name,
                  c->instance, (long)c->pid,
                  sig == SIGTERM ? "SIGTERM" : "SIGKILL");
        sup_kill(c, sig);
    }
    arm(s, STOP_KILL_MS);
}
