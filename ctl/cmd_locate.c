/*
 * cmd_locate.c - rzkvctl locate: which nodes hold a key, best first.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "ctl.h"
#include "ring.h"

int
cmd_locate(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "cluster", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *cluster_path = NULL;
    int ch;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': cluster_path = optarg; break;
        case 'h':
            printf("usage: rzkvctl locate --cluster CLUSTER.yml KEY\n"
                   "Print the ids of the nodes that hold KEY, best first.\n");
            return CTL_EXIT_OK;
        default:
            ctl_usage_error("locate", "bad option");
            return CTL_EXIT_USAGE;
        }
    }
    if (cluster_path == NULL || argc - optind != 1) {
        ctl_usage_error("locate", "need --cluster and exactly one KEY");
        return CTL_EXIT_USAGE;
    }

    char err[CONF_ERR_MAX];
    struct cluster_conf *cc;
    if (conf_load_cluster(cluster_path, &cc, err, sizeof(err)) != 0) {
        fprintf(stderr, "rzkvctl locate: %s\n", err);
        return CTL_EXIT_ERROR;
    }
    const char **ids = calloc(cc->node_count, sizeof(*ids));
    size_t *out = calloc(cc->node_count, sizeof(*out));
    struct ring ring;
    if (ids == NULL || out == NULL) {
        perror("rzkvctl locate");
        return CTL_EXIT_ERROR;
    }
    for (size_t i = 0; i < cc->node_count; i++)
        ids[i] = cc->nodes[i].id;
    if (ring_init(&ring, cc->seed, ids, cc->node_count) != 0) {
        perror("rzkvctl locate");
        return CTL_EXIT_ERROR;
    }
    const char *key = argv[optind];
    size_t n = ring_locate(&ring, key, strlen(key),
                           (size_t)cc->replica_count, out);
    for (size_t i = 0; i < n; i++)
        printf("%s\n", ring.nodes[out[i]].id);
    ring_free(&ring);
    free(out);
    free(ids);
    conf_cluster_free(cc);
    return CTL_EXIT_OK;
}
