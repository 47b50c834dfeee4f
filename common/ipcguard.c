/*
 * ipcguard.c - detect and repair IPC listeners frozen by nng#1518.
 *
 * With nng < 1.6.0 a peer that disconnects during the SP handshake leaves
 * the IPC listener never accepting again (t/unit/test_ipcguard.c shows it
 * after one or two such peers).  Re-creating the listener cures it, so a
 * thread per guarded listener checks once a second that a new connection
 * reaches the socket, and re-creates the listener when none does.
 *
 * The probe never sends a request, so the guarded worker sees nothing but
 * a pipe that comes and goes.  It stays connected until the next probe:
 * closing it while the listener's side of the handshake may still be
 * running would be the very bug.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "ipcguard.h"
#include "log.h"

#define PROTO_REQ0 0x30
#define PROTO_REP0 0x31
#define PROBE_POLL_MS 20

struct ipcguard {
    nng_socket sock;
    char *url;
    const char *path;                   /* inside url, after "ipc://" */
    nng_listener current;
    nng_listener retired[IPCGUARD_RETIRED_MAX];
    int nretired;
    int peer_proto;                     /* protocol the probe opens */
    nng_socket probe;
    int probe_open;
    pthread_t thread;
    struct ipcguard *next;
};

/* One lock for every guard: events are one a second at most. */
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t guard_cond = PTHREAD_COND_INITIALIZER;
static struct ipcguard *guards;
static int guards_stopping;
static unsigned guard_restarts;

static void
deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Sleep up to ms unless told to stop; nonzero when stopping.  Called with
 * guard_lock held. */
static int
wait_locked(int ms)
{
    struct timespec deadline;

    deadline_in(&deadline, ms);
    while (!guards_stopping)
        if (pthread_cond_timedwait(&guard_cond, &guard_lock, &deadline) != 0)
            break;
    return guards_stopping;
}

static void
probe_close(struct ipcguard *g)
{
    if (g->probe_open) {
        nng_close(g->probe);
        g->probe_open = 0;
    }
}

static int
probe_open(struct ipcguard *g)
{
    int rv;

    rv = g->peer_proto == PROTO_REQ0 ? nng_req0_open(&g->probe)
                                     : nng_rep0_open(&g->probe);
    if (rv != 0)
        return rv;
    g->probe_open = 1;
    /* Redial soon if the path is briefly missing (a restart under way). */
    if ((rv = nng_socket_set_ms(g->probe, NNG_OPT_RECONNMINT, 100)) != 0 ||
        (rv = nng_socket_set_ms(g->probe, NNG_OPT_RECONNMAXT, 500)) != 0) {
        probe_close(g);
        return rv;
    }
    return 0;
}

/*
 * Connections the listener has handed to its socket so far (its "accept"
 * statistic), or -1.  The probe's own side of the handshake proves
 * nothing: a frozen listener still accepts and negotiates at the transport
 * level, it only never passes the connection on to the socket.
 */
static int64_t
listener_accepted(nng_listener l)
{
    nng_stat *all, *ls, *st;
    int64_t n = -1;

    if (nng_stats_get(&all) != 0)
        return -1;
    if ((ls = nng_stat_find_listener(all, l)) != NULL &&
        (st = nng_stat_find(ls, "accept")) != NULL)
        n = (int64_t)nng_stat_value(st);
    nng_stats_free(all);
    return n;
}

/* Does the listener take a new connection in time?  1 yes, 0 no, -1 if we
 * are stopping or cannot tell. */
static int
probe_once(struct ipcguard *g)
{
    int64_t before, now;
    int rv, waited, stopping = 0;

    if ((before = listener_accepted(g->current)) < 0)
        return -1;
    probe_close(g);                     /* the last one, long negotiated */
    if ((rv = probe_open(g)) != 0 ||
        (rv = nng_dial(g->probe, g->url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        log_warnx("probe of %s: %s", g->url, nng_strerror(rv));
        probe_close(g);
        return -1;
    }
    for (waited = 0; waited < IPCGUARD_TIMEOUT_MS && !stopping;
         waited += PROBE_POLL_MS) {
        pthread_mutex_lock(&guard_lock);
        stopping = wait_locked(PROBE_POLL_MS);
        pthread_mutex_unlock(&guard_lock);
        if ((now = listener_accepted(g->current)) < 0)
            return -1;
        if (now > before)
            return 1;                   /* the probe stays until next time */
    }
    if (stopping)
        return -1;
    probe_close(g);                     /* nobody is negotiating with it */
    return 0;
}

/* The socket, or this listener, was closed by its owner: nothing to do. */
static int
listener_gone(nng_listener l)
{
    char *url;

    if (nng_listener_get_string(l, NNG_OPT_URL, &url) != 0)
        return 1;
    nng_strfree(url);
    return 0;
}

static void
relisten(struct ipcguard *g)
{
    nng_listener fresh;
    unsigned n;
    int rv;

    log_warnx("ipc listener %s stopped accepting (nng#1518); restarting it",
              g->url);
    /* Closing a listener unlinks the path too: harmless here, the path
     * belongs to the frozen listener and is replaced just below. */
    if (g->nretired == IPCGUARD_RETIRED_MAX) {
        nng_listener_close(g->retired[0]);
        memmove(&g->retired[0], &g->retired[1],
                sizeof(g->retired[0]) * (IPCGUARD_RETIRED_MAX - 1));
        g->nretired--;
    }
    if (unlink(g->path) != 0 && errno != ENOENT)
        log_warn("unlink %s", g->path);
    if ((rv = nng_listen(g->sock, g->url, &fresh, 0)) != 0) {
        /* The next probe fails too and we try again. */
        log_warnx("listen %s: %s", g->url, nng_strerror(rv));
        return;
    }
    g->retired[g->nretired++] = g->current;
    g->current = fresh;
    pthread_mutex_lock(&guard_lock);
    n = ++guard_restarts;
    pthread_mutex_unlock(&guard_lock);
    log_notice("ipc listener %s restarted (%u restart%s so far)", g->url, n,
               n == 1 ? "" : "s");
}

static void *
guard_thread(void *arg)
{
    struct ipcguard *g = arg;
    int stopping, ok;

    for (;;) {
        pthread_mutex_lock(&guard_lock);
        stopping = wait_locked(IPCGUARD_INTERVAL_MS);
        pthread_mutex_unlock(&guard_lock);
        if (stopping || listener_gone(g->current))
            break;
        if ((ok = probe_once(g)) != 0)
            continue;
        /* A socket closing under us fails the probe too: not a freeze. */
        if (listener_gone(g->current))
            break;
        relisten(g);
    }
    probe_close(g);
    return NULL;
}

static int
guard_disabled(void)
{
    const char *v = getenv("RZKV_IPCGUARD");

    return v != NULL && strcmp(v, "off") == 0;
}

/* Start watching; the listener works unguarded if this fails. */
static void
guard_start(nng_socket sock, const char *url, nng_listener l)
{
    struct ipcguard *g;
    int peer, rv;

    if ((rv = nng_socket_get_int(sock, NNG_OPT_PEER, &peer)) != 0 ||
        (peer != PROTO_REQ0 && peer != PROTO_REP0)) {
        log_warnx("%s: no guard for this protocol", url);
        return;
    }
    if ((g = calloc(1, sizeof(*g))) == NULL ||
        (g->url = strdup(url)) == NULL) {
        free(g);
        log_warnx("%s: no guard: out of memory", url);
        return;
    }
    if (listener_accepted(l) < 0) {
        log_warnx("%s: no guard: nng statistics unavailable", url);
        free(g->url);
        free(g);
        return;
    }
    g->sock = sock;
    g->path = g->url + strlen("ipc://");
    g->current = l;
    g->peer_proto = peer;
    pthread_mutex_lock(&guard_lock);
    if ((rv = pthread_create(&g->thread, NULL, guard_thread, g)) != 0) {
        pthread_mutex_unlock(&guard_lock);
        log_warnx("%s: no guard: pthread_create: %s", url, strerror(rv));
        free(g->url);
        free(g);
        return;
    }
    g->next = guards;
    guards = g;
    pthread_mutex_unlock(&guard_lock);
}

int
ipcguard_listen(nng_socket sock, const char *url)
{
    nng_listener l;
    int rv;

    if ((rv = nng_listen(sock, url, &l, 0)) != 0)
        return rv;
    if (strncmp(url, "ipc://", strlen("ipc://")) != 0)
        return 0;
    if (guard_disabled())
        log_notice("%s: listener guard off (RZKV_IPCGUARD=off)", url);
    else
        guard_start(sock, url, l);
    return 0;
}

void
ipcguard_stop(void)
{
    struct ipcguard *list, *g;

    pthread_mutex_lock(&guard_lock);
    guards_stopping = 1;
    pthread_cond_broadcast(&guard_cond);
    list = guards;
    guards = NULL;
    pthread_mutex_unlock(&guard_lock);
    while ((g = list) != NULL) {
        list = g->next;
        pthread_join(g->thread, NULL);
        free(g->url);
        free(g);
    }
    /* Guards started later (a test's next case) run again. */
    pthread_mutex_lock(&guard_lock);
    guards_stopping = 0;
    pthread_mutex_unlock(&guard_lock);
}

unsigned
ipcguard_restarts(void)
{
    unsigned n;

    pthread_mutex_lock(&guard_lock);
    n = guard_restarts;
    pthread_mutex_unlock(&guard_lock);
    return n;
}
