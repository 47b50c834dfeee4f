/*
 * sup.h - the supervisor's model: one header for its structs and every
 * cross-file prototype, grouped by the file that defines them (Postfix
 * master.h).  The contract with the workers (fds, environment, exit codes,
 * file names) lives apart, in common/contract.h.
 *
 * The model is small: the supervisor (struct sup) runs one group per role
 * (struct sup_group: how many, the restart policy), and each group has one
 * slot per instance (struct sup_child: the current process of that slot,
 * its state and its history).  A slot keeps its instance number for ever;
 * the processes that fill it come and go.
 */
#ifndef RZKV_SUP_H
#define RZKV_SUP_H

#include <stdint.h>
#include <sys/types.h>

#include "conf.h"

struct event;
struct event_base;
struct evbuffer;
struct evconnlistener;
struct sup_metrics;

struct sup_options {
    const char *node_path;
    const char *cluster_path;
    int foreground;             /* -f */
    int check_only;             /* -t */
    int verbose;                /* -v */
};

/*
 * Restart policy (STYLE.md practice 7, s6-supervise): the delay before a
 * restart starts at min, doubles at every death, is capped at max and goes
 * back to min once a process has stayed up reset_after; a slot is never
 * started twice within min_interval; death_limit deaths within
 * death_window mark the slot failed (s6-permafailon).
 */
struct sup_backoff {
    int min_ms;
    int max_ms;
    int reset_after_ms;
    int min_interval_ms;
    int death_limit;
    int death_window_ms;
};

#define SUP_DEATH_LIMIT_MAX     16

/*
 * The life of a slot:
 *
 *   STOPPED --spawn--> STARTING --"ready"--> READY
 *   STARTING/READY --death--> BACKOFF --timer--> STARTING
 *   STARTING/READY --exit 78, or too many deaths--> FAILED (until restart
 *                                                   of rzkvd)
 *   any running --node stops--> STOPPING --death--> STOPPED
 */
enum child_state {
    CHILD_STOPPED = 0,
    CHILD_STARTING,
    CHILD_READY,
    CHILD_BACKOFF,
    CHILD_FAILED,
    CHILD_STOPPING,
};

enum sup_role {
    SUP_STORAGE = 0,
    SUP_COORD,
    SUP_NROLES,
};

struct sup;
struct sup_group;

struct sup_child {
    struct sup_group *group;
    int instance;
    enum child_state state;
    pid_t pid;                  /* 0 when no process */
    int chan_fd;                /* our end of the status channel, -1 */
    struct event *chan_ev;      /* reads "ready" lines from chan_fd */
    char chan_buf[128];
    size_t chan_len;
    struct event *timer;        /* backoff restart, or kill after EOF */
    unsigned generation;        /* starts so far; RZKV_GENERATION */
    int64_t started_at;         /* monotonic ms of the last start */
    int64_t ready_at;           /* monotonic ms it last became ready, 0 */
    int restarts;               /* starts after a death */
    int sent_signal;            /* the last signal we sent, 0: none */
    int backoff_ms;             /* the delay the next restart waits */
    int last_status;            /* raw wait status, -1: never died */
    char last_exit[48];         /* "exit 1", "signal 9 (core dumped)" */
    char fail_reason[96];       /* why the slot is FAILED */
    int64_t deaths[SUP_DEATH_LIMIT_MAX];  /* ring of death times */
    int ndeaths;
};

struct sup_group {
    struct sup *sup;
    enum sup_role role;
    const char *name;           /* ROLE_STORAGE, ROLE_COORDINATOR */
    int count;
    struct sup_child *children;
    struct sup_backoff backoff;
};

enum sup_state {
    SUP_STARTING = 0,           /* not every worker has been ready yet */
    SUP_SERVING,                /* every worker ready, front door open */
    SUP_DEGRADED,               /* some worker not ready (restarting,
                                 * failed) */
    SUP_STOPPING,
};

/* Which workers the stop sequence is waiting for. */
enum sup_stop_phase {
    STOP_NONE = 0,
    STOP_COORDINATORS,
    STOP_STORAGE,
    STOP_DONE,
};

struct sup {
    const struct sup_options *opts;
    struct node_conf *node;
    struct cluster_conf *cluster;
    char *node_text;            /* node.yml as read at start, to notice
                                 * edits that need a restart */
    size_t node_text_len;
    char *cluster_text;         /* the active CLUSTER.yml, as validated */
    size_t cluster_text_len;
    char self_exe[4096];        /* /proc/self/exe, read before anything */
    char node_path[4096];       /* absolute paths handed to workers */
    char active_cluster[4096];  /* run_dir/RZKV_ACTIVE_CLUSTER */
    char control_path[4096];
    char pidfile[4096];
    int lock_fd;
    int log_syslog;             /* workers log to syslog too */
    int notify_fd;              /* tells the starting parent we are up */

    struct event_base *base;
    struct event *sig_ev[4];
    struct event *stop_timer;
    struct evconnlistener *control;
    int listen_fd;              /* node.local_address, bound (sup_front.c) */
    struct sup_metrics *metrics;    /* /metrics and /health */

    struct sup_group groups[SUP_NROLES];
    enum sup_state state;
    enum sup_stop_phase stop_phase;
    int stop_escalation;        /* 0 "stop" sent, 1 SIGTERM, 2 SIGKILL */
    int coordinators_started;
    int served;                 /* has been SERVING at least once */
    int64_t started_at;         /* monotonic ms */
    int exit_status;
};

/* sup_main.c */
int sup_main(const struct sup_options *opts);

/* sup_setup.c: what happens once, before the event loop */
int sup_check_config(const struct sup_options *opts);
void sup_load_config(struct sup *s);
void sup_free_config(struct sup *s);
void sup_lock_data_dir(struct sup *s);
void sup_prepare_run_dir(struct sup *s);
int sup_write_active_cluster(struct sup *s, const char *text, size_t len);
void sup_open_log(struct sup *s);
void sup_daemonize(struct sup *s);
void sup_announce(struct sup *s);
void sup_cleanup_files(struct sup *s);

/* sup_policy.c: the restart policy, pure */
extern const struct sup_backoff sup_default_backoff;
/* Advance *backoff_ms for a death now; the delay before the next start. */
int sup_backoff_next(const struct sup_backoff *b, int *backoff_ms,
                     int64_t started_at, int64_t now);
/* Record a death in the ring deaths[]; 1 if the slot died too often. */
int sup_death_record(const struct sup_backoff *b, int64_t *deaths,
                     int *ndeaths, int64_t now);

/* sup_state.c: slot and node states */
int64_t sup_now_ms(void);
const char *child_state_str(enum child_state st);
const char *sup_state_str(enum sup_state st);
void sup_groups_init(struct sup *s);
void sup_groups_free(struct sup *s);
void sup_child_set_state(struct sup_child *c, enum child_state st);
void sup_child_ready(struct sup_child *c);
void sup_child_died(struct sup_child *c, int status);
int sup_child_backoff_ms(struct sup_child *c, int64_t now);
void sup_update_state(struct sup *s);
int sup_group_alive(const struct sup_group *g);
void sup_start_group(struct sup_group *g);

/* sup_spawn.c: fork+exec of one worker and its status channel */
int sup_spawn(struct sup_child *c);
void sup_send(struct sup_child *c, const char *line);
void sup_kill(struct sup_child *c, int sig);
void sup_chan_close(struct sup_child *c);

/* sup_reap.c: waitpid loop and death classification */
void sup_reap(struct sup *s);
void sup_describe_exit(int status, char *buf, size_t len);

/* sup_signal.c: SIGCHLD, SIGTERM, SIGINT, SIGHUP through libevent */
int sup_signals_init(struct sup *s);
void sup_signals_free(struct sup *s);

/* sup_stop.c: the ordered stop with escalation */
void sup_stop(struct sup *s, const char *why);
void sup_stop_progress(struct sup *s);

/* sup_control.c: the control socket for rzkvctl */
int sup_control_open(struct sup *s);
void sup_control_close(struct sup *s);
void sup_status_json(struct sup *s, struct evbuffer *out);

/* sup_reload.c: re-read CLUSTER.yml, validate beside the old one, swap */
int sup_reload(struct sup *s, char *err, size_t errlen);
char *sup_read_file(const char *path, size_t *len, char *err, size_t errlen);
int sup_cross_check(const struct node_conf *node,
                    const struct cluster_conf *cluster,
                    char *err, size_t errlen);

/* sup_front.c: the node's TCP address, bound here, served by coordinators */
int sup_front_bind(struct sup *s, char *err, size_t errlen);
void sup_front_close_listener(struct sup *s);

/* sup_metrics.c: the workers' counters files, /metrics and /health */
int sup_metrics_probe(const struct node_conf *node, char *err, size_t errlen);
int sup_metrics_open(struct sup *s, char *err, size_t errlen);
void sup_metrics_close(struct sup *s);
void sup_metrics_node_json(struct sup *s, struct evbuffer *out);
void sup_metrics_worker_json(const struct sup_child *c, struct evbuffer *out);

#endif
