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

enum worker_cmd {
    WORKER_CMD_EOF = 0,     /* the supervisor is gone: exit now */
    WORKER_CMD_STOP,        /* finish in-flight work, then exit 0 */
    WORKER_CMD_RELOAD,      /* re-read the cluster file */
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

#endif
