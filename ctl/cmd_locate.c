/*
 * cmd_locate.c - rzkvctl locate: which nodes hold a key, best first.
 * While nodes join or leave, by the placement after the change, or with
 * --before by the one before it.  KEY "-" reads keys from standard input,
 * one a line, and prints a line for each: the key, a tab, its nodes.
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
        { "before", no_argument, NULL, 'b' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *cluster_path = NULL;
    int ch, before = 0;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:bh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': cluster_path = optarg; break;
        case 'b': before = 1; break;
        case 'h':
            printf("usage: rzkvctl locate --cluster CLUSTER.yml [--before] "
                   "KEY | -\n"
                   "Print the ids of the nodes that hold KEY, best first.  "
                   "While nodes join\nor leave (cluster.nodes.ID.state), "
                   "those that hold it after the change,\nor with --before "
                   "those that held it before.  With -, read keys one a\n"
                   "line from standard input and print for each the key, "
                   "a tab, and its nodes\nseparated by spaces.\n");
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
    size_t *out = calloc(cc->node_count, sizeof(*out));
    struct placement p;
    if (out == NULL || conf_cluster_placement(cc, &p) != 0) {
        perror("rzkvctl locate");
        return CTL_EXIT_ERROR;
    }
    const char *key = argv[optind];
    const struct ring *ring = before && p.changing ? &p.before : &p.after;
    size_t want = (size_t)cc->replica_count;
    if (strcmp(key, "-") != 0) {
        size_t n = ring_locate(ring, key, strlen(key), want, out);
        for (size_t i = 0; i < n; i++)
            printf("%s\n", ring->nodes[out[i]].id);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, stdin)) > 0) {
            if (line[len - 1] == '\n')
                line[--len] = '\0';
            size_t n = ring_locate(ring, line, (size_t)len, want, out);
            printf("%s\t", line);
            for (size_t i = 0; i < n; i++)
                printf("%s%s", i > 0 ? " " : "", ring->nodes[out[i]].id);
            putchar('\n');
        }
        free(line);
    }
    placement_free(&p);
    free(out);
    conf_cluster_free(cc);
    return CTL_EXIT_OK;
}
