/*
 * fuzz_conf.c - libFuzzer target: node.yml and cluster.yml text.
 *
 * The supervisor parses both files at start and on every reload (SIGHUP),
 * and rzkvctl parses them too; a bad file must give a message, never a
 * crash.  Built twice: with FUZZ_CLUSTER it feeds conf_parse_cluster(),
 * otherwise conf_parse_node().  A file that is accepted is also walked
 * (every address re-parsed, every node looked up) and freed.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void
check_address(const char *addr)
{
    char host[256];
    int port;
    /* Accepted once: it must parse again the same way. */
    if (addr != NULL && addr[0] != '\0' &&
        conf_parse_address(addr, host, sizeof(host), &port) != 0)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[CONF_ERR_MAX];
    err[0] = '\0';
#ifdef FUZZ_CLUSTER
    struct cluster_conf *c = NULL;
    if (conf_parse_cluster("cluster.yml", (const char *)data, size, &c, err,
                           sizeof(err)) == 0) {
        if (c == NULL)
            abort();
        for (size_t i = 0; i < c->node_count; i++) {
            check_address(c->nodes[i].remote_address);
            if (conf_cluster_find(c, c->nodes[i].id) != (int)i)
                abort();        /* ids are unique once accepted */
        }
        if (c->replica_count < 1 || (size_t)c->replica_count > c->node_count)
            abort();
        conf_cluster_free(c);
    } else {
        sink += strlen(err);
    }
#else
    struct node_conf *n = NULL;
    if (conf_parse_node("node.yml", (const char *)data, size, &n, err,
                        sizeof(err)) == 0) {
        if (n == NULL)
            abort();
        check_address(n->local_address);
        sink += strlen(n->id) + strlen(n->data_dir) + strlen(n->run_dir);
        conf_node_free(n);
    } else {
        sink += strlen(err);
    }
#endif
    return 0;
}
