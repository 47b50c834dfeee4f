/*
 * rzkvd - the rzkv node daemon.
 *
 *   rzkvd [-f] [-t] [-v] NODE.yml CLUSTER.yml       the supervisor
 *   rzkvd -P storage|coordinator -I N NODE.yml CLUSTER.yml
 *                                                   a worker (started by
 *                                                   the supervisor only)
 *
 * main() only parses the command line and hands over to a role: the
 * supervisor (supervisor/sup_main.c) or one of the workers in the role
 * table (worker/worker.h).  See rzkvd(8).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "sup.h"
#include "worker.h"

static const struct worker_role roles[] = {
    { ROLE_STORAGE, storage_main },
    { ROLE_COORDINATOR, coord_main },
};

static _Noreturn void
usage(void)
{
    fprintf(stderr,
            "usage: rzkvd [-ftv] NODE.yml CLUSTER.yml\n"
            "       rzkvd -P storage|coordinator -I INSTANCE NODE.yml CLUSTER.yml\n"
            "  -f  stay in the foreground and log to stderr\n"
            "  -t  check both configuration files and exit\n"
            "  -v  log debug messages\n");
    exit(RZKV_EXIT_USAGE);
}

static int
run_worker(const char *role, int instance, const char *node_path,
           const char *cluster_path, int verbose)
{
    char err[CONF_ERR_MAX];
    struct node_conf *node;

    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        if (strcmp(role, roles[i].name) != 0)
            continue;
        log_init(role, instance);
        if (conf_load_node(node_path, &node, err, sizeof(err)) != 0)
            fatalx_config("%s", err);
        log_set_level(verbose ? LOG_LEVEL_DEBUG
                              : (enum log_level)node->log_level);
        int status = roles[i].entry(node, cluster_path, instance);
        conf_node_free(node);
        return status;
    }
    fprintf(stderr, "rzkvd: unknown role \"%s\"\n", role);
    return RZKV_EXIT_USAGE;
}

int
main(int argc, char **argv)
{
    struct sup_options opts = { 0 };
    const char *role = NULL;
    int instance = -1;
    int ch;

    while ((ch = getopt(argc, argv, "ftvP:I:h")) != -1) {
        switch (ch) {
        case 'f': opts.foreground = 1; break;
        case 't': opts.check_only = 1; break;
        case 'v': opts.verbose = 1; break;
        case 'P': role = optarg; break;
        case 'I': instance = atoi(optarg); break;
        default: usage();
        }
    }
    argc -= optind;
    argv += optind;
    if (argc != 2)
        usage();

    if (role != NULL) {
        if (instance < 0)
            usage();
        return run_worker(role, instance, argv[0], argv[1], opts.verbose);
    }
    opts.node_path = argv[0];
    opts.cluster_path = argv[1];
    return sup_main(&opts);
}
