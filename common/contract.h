/*
 * contract.h - what the supervisor and its workers agree on.
 *
 * The supervisor (rzkvd) starts every worker by fork+exec of its own binary
 * (nng is not fork-safe, and SQLite must not cross a fork):
 *
 *     rzkvd -P storage|coordinator -I INSTANCE NODE.yml CLUSTER.yml
 *
 * with RZKV_STATUS_FD open on one end of a socketpair(AF_UNIX, SOCK_STREAM)
 * to the supervisor.  Over it travel newline-terminated text lines:
 *
 *   worker -> supervisor   "ready"      database open and sockets bound
 *   supervisor -> worker   "reload"     re-read CLUSTER.yml (validated copy)
 *                          "stop"       finish in-flight requests, exit 0
 *
 * A worker exits at once when the channel reaches EOF (the supervisor died),
 * and also asks the kernel for SIGKILL when its parent dies.
 *
 * CLUSTER.yml handed to workers is the supervisor's validated copy in the
 * run directory (RZKV_ACTIVE_CLUSTER), so a worker never reads a file the
 * supervisor has not checked.
 */
#ifndef RZKV_CONTRACT_H
#define RZKV_CONTRACT_H

#define RZKV_STATUS_FD          3

/* A coordinator also gets the node's bound TCP socket (node.local_address)
 * as RZKV_LISTEN_FD, with RZKV_ENV_LISTEN_FD=4 in its environment; it
 * listen()s and serves it (worker/coord_front.c). */
#define RZKV_LISTEN_FD          4
#define RZKV_ENV_LISTEN_FD      "RZKV_LISTEN_FD"

#define RZKV_ENV_GENERATION     "RZKV_GENERATION"   /* restart count of slot */

/* Exit statuses: documented in rzkvd(8). */
#define RZKV_EXIT_OK            0
#define RZKV_EXIT_FATAL         1   /* environment failure: restart, backoff */
#define RZKV_EXIT_USAGE         64  /* bad command line */
#define RZKV_EXIT_CONFIG        78  /* EX_CONFIG: bad config, a database that
                                     * can't be opened, is corrupt or belongs
                                     * to another shard: do not restart */

/* Files under node.run_dir. */
#define RZKV_CONTROL_SOCK       "control.sock"
#define RZKV_ACTIVE_CLUSTER     "cluster.active.yml"
#define RZKV_PIDFILE            "rzkvd.pid"
#define RZKV_STORAGE_IPC_FMT    "ipc://%s/storage-%d.ipc"

/* Files under node.data_dir. */
#define RZKV_LOCKFILE           "rzkvd.lock"
#define RZKV_STORAGE_DB_FMT     "%s/shard-%d.db"

/* Protocol limits. */
#define RZKV_MAX_KEY            65536       /* bytes; keys are 1..65536 */

#define ROLE_SUPERVISOR  "rzkvd"
#define ROLE_STORAGE     "storage"
#define ROLE_COORDINATOR "coordinator"

#endif
