/* storage.c - placeholder until the storage worker lands: reports ready
 * and waits for the supervisor. */
#include "config.h"
#include "log.h"
#include "worker.h"
int
storage_main(const struct node_conf *node, const char *cluster_path,
             int instance)
{
    (void)node; (void)cluster_path;
    worker_setup(ROLE_STORAGE, instance);
    worker_ready();
    while (worker_wait_command() == WORKER_CMD_RELOAD)
        ;
    return 0;
}
