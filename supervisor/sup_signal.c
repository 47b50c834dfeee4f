/*
 * sup_signal.c - the supervisor's signals, delivered by libevent.
 *
 * NAME
 *	sup_signal - SIGCHLD reaps, SIGTERM/SIGINT stop, SIGHUP reloads
 * DESCRIPTION
 *	libevent turns each signal into an event that runs inside the loop
 *	(relayd parent_sig_handler), so the handlers below may log, fork and
 *	touch the model: nothing runs in signal context.  SIGPIPE is ignored
 *	because a worker or rzkvctl may hang up while we write to it; the
 *	write then fails with EPIPE and is handled where it happens.
 * SEE ALSO
 *	sup_reap.c, sup_stop.c, sup_reload.c
 */
#include "config.h"

#include <event2/event.h>
#include <signal.h>
#include <string.h>

#include "log.h"
#include "sup.h"

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct sup *s = arg;
    char err[CONF_ERR_MAX];
    (void)what;

    switch (sig) {
    case SIGCHLD:
        sup_reap(s);
        break;
    case SIGTERM:
    case SIGINT:
        sup_stop(s, sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    case SIGHUP:
        log_info("SIGHUP: reloading %s", s->opts->cluster_path);
        sup_reload(s, err, sizeof(err));
        break;
    default:
        panic("unexpected signal %d", (int)sig);
    }
}

int
sup_signals_init(struct sup *s)
{
    static const int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP };

    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        s->sig_ev[i] = evsignal_new(s->base, sigs[i], signal_cb, s);
        if (s->sig_ev[i] == NULL || evsignal_add(s->sig_ev[i], NULL) != 0) {
            log_warnx("cannot watch signal %s", strsignal(sigs[i]));
            return -1;
        }
    }
    return 0;
}

void
sup_signals_free(struct sup *s)
{
    for (size_t i = 0; i < sizeof(s->sig_ev) / sizeof(s->sig_ev[0]); i++)
        if (s->sig_ev[i] != NULL) {
            event_free(s->sig_ev[i]);
            s->sig_ev[i] = NULL;
        }
}
