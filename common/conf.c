/* placeholder: replaced by the libyaml loader */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conf.h"
int conf_load_node(const char *path, struct node_conf **out, char *err, size_t errlen)
{ (void)out; snprintf(err, errlen, "%s: not implemented", path); return -1; }
int conf_load_cluster(const char *path, struct cluster_conf **out, char *err, size_t errlen)
{ (void)out; snprintf(err, errlen, "%s: not implemented", path); return -1; }
void conf_node_free(struct node_conf *c) { (void)c; }
void conf_cluster_free(struct cluster_conf *c) { (void)c; }
int conf_parse_address(const char *addr, char *host, size_t hostlen, int *port)
{ const char *c = strrchr(addr, ':'); if (!c) return -1; snprintf(host, hostlen, "%.*s", (int)(c - addr), addr); *port = atoi(c + 1); return 0; }
