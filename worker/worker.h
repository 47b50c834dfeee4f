/*
 * worker.h - the roles rzkvd runs as a worker, and their side of the
 * supervisor contract (common/contract.h).
 *
 * Role table: every process kind, its entry function and how many run.
 *
 *   role          entry          count                     file
 *   rzkvd         sup_main()     1 per node                supervisor/
 *   storage       storage_main() node.storage_workers      worker/storage.c
 *   coordinator   coord_main()   node.coordinator_workers  worker/coord.c
 *
 * An entry function owns the process: it returns only the exit status.
 */
#ifndef RZKV_WORKER_H
#define RZKV_WORKER_H

#include "conf.h"

struct worker_role {
    const char *name;
    int (*entry)(const struct node_conf *node, const char *cluster_path,
                 int instance);
};

int storage_main(const struct node_conf *node, const char *cluster_path,
                 int instance);
int coord_main(const struct node_conf *node, const char *cluster_path,
               int instance);

/* worker/chan.c: the worker side of the status channel. */

/*
 * Set by the supervisor when the node logs to syslog: the worker logs
 * there too (otherwise a worker logs to the stderr it inherited, which the
 * supervisor has pointed at the node's log file or its own stderr).
 */
#define RZKV_ENV_LOG_SYSLOG     "RZKV_LOG_SYSLOG"

/*
 * Test-only fault injection, honoured by worker_setup():
 *   RZKV_TEST_CRASH_AT_START=ROLE[/INSTANCE][:STATUS]
 * makes the matching worker exit at once with STATUS (default 1), as if it
 * had crashed while starting; t/integ/supervisor_backoff.sh uses it to
 * watch the restart backoff and the "failed" state (STATUS 78).
 */
#define RZKV_ENV_TEST_CRASH     "RZKV_TEST_CRASH_AT_START"

enum worker_cmd {
    WORKER_CMD_EOF = 0,     /* the supervisor is gone: exit now */
    WORKER_CMD_STOP,        /* finish in-flight work, then exit 0 */
    WORKER_CMD_RELOAD,      /* re-read the cluster file */
    WORKER_CMD_REPAIR,      /* coordinator 0: an anti-entropy pass now */
};

/*
 * Call first in a worker: asks for SIGKILL when the supervisor dies (and
 * exits if it already has), ignores SIGINT and SIGHUP (the supervisor owns
 * the lifecycle) and SIGPIPE.  Without RZKV_STATUS_FD open (a worker run by
 * hand, as tests do) the worker is "standalone": SIGTERM and SIGINT stop it.
 */
void worker_setup(const char *role, int instance);
int worker_is_standalone(void);
/* Tell the supervisor this worker serves. */
void worker_ready(void);
/* Block until the next command (standalone: until SIGTERM/SIGINT -> STOP). */
enum worker_cmd worker_wait_command(void);
/*
 * Standalone: has SIGTERM or SIGINT come (blocked, so not yet handled)?
 * For loops before worker_ready(); a supervised worker is stopped by the
 * supervisor's SIGTERM then, which is not blocked.
 */
int worker_stop_pending(void);

#endif
