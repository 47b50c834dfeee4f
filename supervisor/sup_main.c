/*
 * sup_main.c - the supervisor's life from start to exit, on one screen.
 *
 * NAME
 *	sup_main - run an rzkv node: check, lock, start workers, serve, stop
 * DESCRIPTION
 *	Everything that can fail because of the user's configuration or
 *	environment (bad YAML, a data directory in use, a port taken, a log
 *	file that can't be opened) is checked before rzkvd detaches, so the
 *	error reaches the terminal or rzkvctl and the exit status says so
 *	(the metrics address too: sup_metrics.c).
 *	Only then does rzkvd daemonize (before any libevent thread exists),
 *	start its event loop, open the control socket and start the storage
 *	workers; sup_state.c takes it from there (coordinators once storage
 *	is ready; they serve the node's address, bound here: sup_front.c).
 * DIAGNOSTICS
 *	Exit 0 after an orderly stop, 1 on an environment failure (data
 *	directory in use, port taken), 78 on a configuration error.
 * SEE ALSO
 *	sup.h for the model, rzkvd(8).
 */
#include "config.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sup.h"

int
sup_main(const struct sup_options *opts)
{
    struct sup sup = { .opts = opts, .lock_fd = -1, .notify_fd = -1,
                       .listen_fd = -1 };
    struct sup *s = &sup;

    log_init(ROLE_SUPERVISOR, -1);
    if (opts->check_only)
        return sup_check_config(opts);

    /* Checks that must reach the user, before detaching. */
    sup_load_config(s);
    sup_lock_data_dir(s);
    sup_prepare_run_dir(s);
    char err[CONF_ERR_MAX];
    if (sup_front_bind(s, err, sizeof(err)) != 0 ||
        sup_metrics_probe(s->node, err, sizeof(err)) != 0) {
        fprintf(stderr, "rzkvd: %s\n", err);
        sup_free_config(s);
        return RZKV_EXIT_FATAL;
    }
    sup_open_log(s);
    if (!opts->foreground)
        sup_daemonize(s);

    s->base = event_base_new();
    if (s->base == NULL)
        fatalx("event_base_new failed");
    s->started_at = sup_now_ms();
    sup_groups_init(s);
    if (sup_signals_init(s) != 0 || sup_control_open(s) != 0)
        fatalx("cannot set up the supervisor's event loop");
    if (sup_metrics_open(s, err, sizeof(err)) != 0)
        fatalx("%s", err);
    sup_announce(s);
    log_info("node %s starting: %d storage, %d coordinator workers, "
             "front door %s", s->node->id, s->node->storage_workers,
             s->node->coordinator_workers, s->node->local_address);

    sup_start_group(&s->groups[SUP_STORAGE]);
    event_base_dispatch(s->base);

    /* The stop sequence ended (sup_stop.c) and broke the loop. */
    sup_front_close_listener(s);
    sup_metrics_close(s);
    sup_control_close(s);
    sup_signals_free(s);
    sup_groups_free(s);
    sup_cleanup_files(s);
    event_base_free(s->base);
    log_info("node %s stopped", s->node->id);
    sup_free_config(s);
    return s->exit_status;
}
