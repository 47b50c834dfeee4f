/*
 * test_conf.c - node.yml and cluster.yml: every refusal names
 * FILE:LINE:COLUMN, the key and what was expected; defaults, relative
 * paths and the shipped example configs load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "log.h"

/* ---- helpers ------------------------------------------------------------ */

static struct cluster_conf *
cluster_ok(const char *text)
{
    char err[CONF_ERR_MAX] = "";
    struct cluster_conf *cc = NULL;
    int rc = conf_parse_cluster("c.yml", text, strlen(text), &cc, err,
                                sizeof(err));
    if (rc != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(cc);
    return cc;
}

static void
cluster_err(const char *text, const char *want)
{
    char err[CONF_ERR_MAX] = "";
    struct cluster_conf *cc = (struct cluster_conf *)&err;
    int rc = conf_parse_cluster("c.yml", text, strlen(text), &cc, err,
                                sizeof(err));
    assert_int_equal(rc, -1);
    assert_null(cc);
    assert_string_equal(err, want);
}

static struct node_conf *
node_ok(const char *text)
{
    char err[CONF_ERR_MAX] = "";
    struct node_conf *nc = NULL;
    int rc = conf_parse_node("/etc/rzkv/n.yml", text, strlen(text), &nc, err,
                             sizeof(err));
    if (rc != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(nc);
    return nc;
}

static void
node_err(const char *text, const char *want)
{
    char err[CONF_ERR_MAX] = "";
    struct node_conf *nc = (struct node_conf *)&err;
    int rc = conf_parse_node("n.yml", text, strlen(text), &nc, err,
                             sizeof(err));
    assert_int_equal(rc, -1);
    assert_null(nc);
    assert_string_equal(err, want);
}

/* Messages whose tail is libyaml's wording: check the prefix. */
static void
cluster_err_prefix(const char *text, const char *want)
{
    char err[CONF_ERR_MAX] = "";
    struct cluster_conf *cc = NULL;
    assert_int_equal(conf_parse_cluster("c.yml", text, strlen(text), &cc,
                                        err, sizeof(err)), -1);
    assert_null(cc);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got \"%s\", want a message starting \"%s\"", err, want);
}

#define NODES3 \
    "  nodes:\n" \
    "    1: {remote_address: 127.0.0.1:8001}\n" \
    "    2: {remote_address: 127.0.0.1:8002}\n" \
    "    3: {remote_address: 127.0.0.1:8003}\n"

/* ---- files -------------------------------------------------------------- */

static void
test_missing_file(void **state)
{
    char err[CONF_ERR_MAX];
    struct cluster_conf *cc = (struct cluster_conf *)&err;
    struct node_conf *nc = (struct node_conf *)&err;

    assert_int_equal(conf_load_cluster("/nonexistent/cluster.yml", &cc, err,
                                       sizeof(err)), -1);
    assert_null(cc);
    assert_string_equal(err, "/nonexistent/cluster.yml: cannot open: "
                        "No such file or directory");
    assert_int_equal(conf_load_node("/nonexistent/node.yml", &nc, err,
                                    sizeof(err)), -1);
    assert_null(nc);
    assert_string_equal(err, "/nonexistent/node.yml: cannot open: "
                        "No such file or directory");
    (void)state;
}

static void
test_directory_not_file(void **state)
{
    char err[CONF_ERR_MAX];
    struct cluster_conf *cc;
    assert_int_equal(conf_load_cluster("/", &cc, err, sizeof(err)), -1);
    assert_string_equal(err, "/: cannot read: Is a directory");
    (void)state;
}

static void
test_file_too_large(void **state)
{
    size_t len = 1024 * 1024 + 1;
    char *big = malloc(len);
    char err[CONF_ERR_MAX];
    struct cluster_conf *cc;
    assert_non_null(big);
    memset(big, '#', len);
    assert_int_equal(conf_parse_cluster("c.yml", big, len, &cc, err,
                                        sizeof(err)), -1);
    assert_string_equal(err, "c.yml: expected a file of at most 1048576 "
                        "bytes, got 1048577 bytes");
    free(big);
    (void)state;
}

/* ---- stage 1: YAML hygiene ---------------------------------------------- */

static void
test_syntax_error(void **state)
{
    /* Bad indentation: libyaml's problem text at its problem_mark. */
    cluster_err("cluster:\n  seed: 0\n replica_count: 3\n",
                "c.yml:3:2: YAML syntax error: did not find expected key "
                "(while parsing a block mapping at 1:1)");
    /* An unclosed flow mapping. */
    cluster_err_prefix("cluster: {seed: 0\n", "c.yml:2:1: YAML syntax "
                       "error: ");
    /* Invalid UTF-8 is a reader error: located by byte offset. */
    cluster_err("cluster:\n  seed: \xff\n",
                "c.yml:2:9: YAML syntax error: invalid leading UTF-8 octet "
                "(byte 0xff)");
    (void)state;
}

static void
test_empty_and_non_mapping(void **state)
{
    cluster_err("", "c.yml:1:1: expected a mapping with the key \"cluster\", "
                "got an empty file");
    cluster_err("# only a comment\n", "c.yml:1:1: expected a mapping with "
                "the key \"cluster\", got an empty file");
    cluster_err("- a\n- b\n", "c.yml:1:1: expected a mapping with the key "
                "\"cluster\", got a sequence");
    cluster_err("hello\n", "c.yml:1:1: expected a mapping with the key "
                "\"cluster\", got \"hello\"");
    cluster_err("cluster:\n", "c.yml:1:1: cluster.replica_count: required "
                "key is missing");
    node_err("other: 1\n", "n.yml:1:1: other: unknown key, expected one "
             "of node");
    node_err("seed: 1\n", "n.yml:1:1: seed: unknown key, expected one of "
             "node");
    (void)state;
}

static void
test_two_documents(void **state)
{
    cluster_err("cluster:\n  replica_count: 1\n" NODES3 "---\nfoo: 1\n",
                "c.yml:7:1: expected a single YAML document, got a second "
                "one");
    (void)state;
}

static void
test_anchor_alias_tag_refused(void **state)
{
    cluster_err("cluster:\n  replica_count: &n 3\n  read_quorum: *n\n"
                NODES3,
                "c.yml:2:18: cluster.replica_count: expected a plain value "
                "(anchors are not supported), got the anchor &\"n\"");
    cluster_err("cluster:\n  replica_count: 3\n  nodes:\n"
                "    1: &a {remote_address: 127.0.0.1:8001}\n",
                "c.yml:4:8: cluster.nodes.1: expected a plain value "
                "(anchors are not supported), got the anchor &\"a\"");
    /* An alias alone (its anchor refused first otherwise): */
    cluster_err("cluster:\n  replica_count: *n\n",
                "c.yml:2:18: cluster.replica_count: expected a plain value "
                "(aliases are not supported), got the alias *\"n\"");
    cluster_err("cluster:\n  replica_count: !!int 3\n" NODES3,
                "c.yml:2:18: cluster.replica_count: expected a plain value "
                "(tags are not supported), got the tag "
                "\"tag:yaml.org,2002:int\"");
    cluster_err("cluster: !custom\n  replica_count: 3\n" NODES3,
                "c.yml:1:10: cluster: expected a plain value (tags are not "
                "supported), got the tag \"!custom\"");
    (void)state;
}

static void
test_nesting_limit(void **state)
{
    char text[256] = "cluster: ";
    for (int i = 0; i < 40; i++)
        strcat(text, "[");
    for (int i = 0; i < 40; i++)
        strcat(text, "]");
    strcat(text, "\n");
    cluster_err(text, "c.yml:1:25: cluster.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0: "
                "expected at most 16 levels of nesting, got more");
    (void)state;
}

static void
test_nul_byte_refused(void **state)
{
    static const char text[] = "cluster:\n  replica_count: 1\n  nodes:\n"
                               "    \"a\\0b\": {remote_address: \":1\"}\n";
    cluster_err(text, "c.yml:4:5: cluster.nodes: expected text without NUL "
                "bytes, got a value with one");
    (void)state;
}

/* ---- stage 2: shape ----------------------------------------------------- */

static void
test_unknown_key(void **state)
{
    cluster_err("cluster:\n  replicas: 3\n" NODES3,
                "c.yml:2:3: cluster.replicas: unknown key, expected one of "
                "seed, replica_count, read_quorum, write_quorum, timeout_ms, "
                "max_clock_skew_ms, nodes");
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n"
                "    1: {remote_address: \":8001\", port: 2}\n",
                "c.yml:4:34: cluster.nodes.1.port: unknown key, expected one "
                "of remote_address, state");
    /* A control byte in a key is escaped: a message stays one line. */
    cluster_err("cluster:\n  \"re\\nplica\": 3\n",
                "c.yml:2:3: cluster.re\\x0aplica: unknown key, expected one "
                "of seed, replica_count, read_quorum, write_quorum, "
                "timeout_ms, max_clock_skew_ms, nodes");
    node_err("node:\n  id: 1\n  local_address: :8001\n  log:\n"
             "    lvl: debug\n",
             "n.yml:5:5: node.log.lvl: unknown key, expected one of file, "
             "level");
    (void)state;
}

static void
test_wrong_type(void **state)
{
    cluster_err("cluster:\n  replica_count: three\n" NODES3,
                "c.yml:2:18: cluster.replica_count: expected an integer, "
                "got \"three\"");
    cluster_err("cluster:\n  replica_count: \"3\"\n" NODES3,
                "c.yml:2:18: cluster.replica_count: expected an integer, "
                "got the quoted string \"3\"");
    cluster_err("cluster:\n  replica_count: 3\n  seed: [1, 2]\n" NODES3,
                "c.yml:3:9: cluster.seed: expected an integer in "
                "0..4294967295, got a sequence");
    cluster_err("cluster:\n  replica_count: 3\n  seed: 0x10\n" NODES3,
                "c.yml:3:9: cluster.seed: expected an integer in "
                "0..4294967295, got \"0x10\"");
    cluster_err("cluster:\n  replica_count: 1\n  nodes: [a, b]\n",
                "c.yml:3:10: cluster.nodes: expected a mapping of node ids "
                "to {remote_address: host:port}, got a sequence");
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n    a: 1.2.3.4:5\n",
                "c.yml:4:8: cluster.nodes.a: expected a mapping "
                "{remote_address: host:port}, got \"1.2.3.4:5\"");
    cluster_err("cluster: 3\n", "c.yml:1:10: cluster: expected a mapping, "
                "got \"3\"");
    node_err("node:\n  id: 1\n  local_address: :8001\n  log: debug\n",
             "n.yml:4:8: node.log: expected a mapping, got \"debug\"");
    node_err("node:\n  id: 1\n  local_address: :8001\n  durability: fast\n",
             "n.yml:4:15: node.durability: expected one of full, normal, "
             "got \"fast\"");
    node_err("node:\n  id: 1\n  local_address: :8001\n  log:\n"
             "    level: verbose\n",
             "n.yml:5:12: node.log.level: expected one of error, warn, "
             "notice, info, debug, got \"verbose\"");
    node_err("node:\n  id: {a: 1}\n  local_address: :8001\n",
             "n.yml:2:7: node.id: expected a node id of 1..255 bytes, "
             "got a mapping");
    (void)state;
}

static void
test_integer_bounds(void **state)
{
    node_err("node:\n  id: 1\n  local_address: :8001\n  storage_workers: 0\n",
             "n.yml:4:20: node.storage_workers: expected an integer in "
             "1..64, got \"0\"");
    node_err("node:\n  id: 1\n  local_address: :8001\n"
             "  coordinator_workers: 65\n",
             "n.yml:4:24: node.coordinator_workers: expected an integer in "
             "1..64, got \"65\"");
    node_err("node:\n  id: 1\n  local_address: :8001\n"
             "  max_value_size: 268435457\n",
             "n.yml:4:19: node.max_value_size: expected an integer in "
             "1..268435456, got \"268435457\"");
    node_err("node:\n  id: 1\n  local_address: :8001\n"
             "  anti_entropy_interval_ms: -1\n",
             "n.yml:4:29: node.anti_entropy_interval_ms: expected an integer "
             "in 0..86400000, got \"-1\"");
    node_err("node:\n  id: 1\n  local_address: :8001\n"
             "  tombstone_purge_delay_ms: 864000001\n",
             "n.yml:4:29: node.tombstone_purge_delay_ms: expected an integer "
             "in 0..864000000, got \"864000001\"");
    cluster_err("cluster:\n  replica_count: 3\n  seed: 4294967296\n" NODES3,
                "c.yml:3:9: cluster.seed: expected an integer in "
                "0..4294967295, got \"4294967296\"");
    cluster_err("cluster:\n  replica_count: 3\n  seed: -1\n" NODES3,
                "c.yml:3:9: cluster.seed: expected an integer in "
                "0..4294967295, got \"-1\"");
    cluster_err("cluster:\n  replica_count: 3\n  timeout_ms: 0\n" NODES3,
                "c.yml:3:15: cluster.timeout_ms: expected an integer in "
                "1..600000, got \"0\"");
    cluster_err("cluster:\n  replica_count: 3\n  max_clock_skew_ms: -1\n"
                NODES3,
                "c.yml:3:22: cluster.max_clock_skew_ms: expected an integer "
                "in 0..600000, got \"-1\"");
    cluster_err("cluster:\n  replica_count: 3\n  timeout_ms: 010\n" NODES3,
                "c.yml:3:15: cluster.timeout_ms: expected an integer in "
                "1..600000, got \"010\" (YAML 1.1 reads a leading 0 as "
                "octal: write it without)");
    cluster_err("cluster:\n  replica_count: 99999999999999999999\n" NODES3,
                "c.yml:2:18: cluster.replica_count: expected an integer, "
                "got \"99999999999999999999\"");
    (void)state;
}

static void
test_missing_required_key(void **state)
{
    /* Reported at the enclosing mapping: its first key. */
    cluster_err("cluster:\n  seed: 1\n" NODES3,
                "c.yml:2:3: cluster.replica_count: required key is missing");
    cluster_err("# members\ncluster:\n  replica_count: 1\n",
                "c.yml:3:3: cluster.nodes: required key is missing");
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n"
                "    a: {address: 127.0.0.1:1}\n",
                "c.yml:4:9: cluster.nodes.a.address: unknown key, expected "
                "one of remote_address, state");
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n    a: {}\n",
                "c.yml:4:8: cluster.nodes.a.remote_address: required key is "
                "missing");
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n    a:\n",
                "c.yml:4:5: cluster.nodes.a.remote_address: required key is "
                "missing");
    node_err("node:\n  id: 1\n", "n.yml:2:3: node.local_address: required "
             "key is missing");
    node_err("node:\n  local_address: :8001\n",
             "n.yml:2:3: node.id: required key is missing");
    node_err("node:\n", "n.yml:1:1: node.id: required key is missing");
    node_err("node:\n  id:\n  local_address: :8001\n",
             "n.yml:2:6: node.id: expected a node id of 1..255 bytes, got "
             "an empty value");
    node_err("node:\n  id: \"\"\n  local_address: :8001\n",
             "n.yml:2:7: node.id: expected a node id of 1..255 bytes, got "
             "\"\"");
    (void)state;
}

static void
test_duplicate_key(void **state)
{
    cluster_err("cluster:\n  replica_count: 1\n  seed: 1\n  seed: 2\n" NODES3,
                "c.yml:4:3: cluster.seed: expected each key once, got it "
                "again (first at 3:3)");
    (void)state;
}

/* ---- stage 3: meaning --------------------------------------------------- */

static void
test_duplicate_node_id(void **state)
{
    /* 1 and "1" are the same id: the second occurrence is the error. */
    cluster_err("cluster:\n  replica_count: 2\n  nodes:\n"
                "    1: {remote_address: 127.0.0.1:8001}\n"
                "    2: {remote_address: 127.0.0.1:8002}\n"
                "    \"1\": {remote_address: 127.0.0.1:8003}\n",
                "c.yml:6:5: cluster.nodes.1: expected each node id once, "
                "got \"1\" again (first at 4:5)");
    (void)state;
}

static void
test_replica_count_bounds(void **state)
{
    cluster_err("cluster:\n  replica_count: 0\n" NODES3,
                "c.yml:2:18: cluster.replica_count: expected an integer in "
                "1..3 (the number of nodes), got \"0\"");
    cluster_err("cluster:\n  replica_count: -2\n" NODES3,
                "c.yml:2:18: cluster.replica_count: expected an integer in "
                "1..3 (the number of nodes), got \"-2\"");
    cluster_err("cluster:\n  replica_count: 4\n" NODES3,
                "c.yml:2:18: cluster.replica_count: expected an integer in "
                "1..3 (the number of nodes), got \"4\"");
    cluster_err("cluster:\n  replica_count:\n" NODES3,
                "c.yml:2:17: cluster.replica_count: expected an integer, got "
                "an empty value");
    (void)state;
}

/* cluster.nodes.ID.state: joining and leaving nodes, and the room each
 * side of the change needs for replica_count. */
static void
test_member_states(void **state)
{
    struct cluster_conf *cc = cluster_ok(
        "cluster:\n  replica_count: 2\n  nodes:\n"
        "    a: {remote_address: \":1\"}\n"
        "    b: {remote_address: \":2\", state: leaving}\n"
        "    c: {remote_address: \":3\", state: member}\n"
        "    d: {remote_address: \":4\", state: joining}\n");
    assert_int_equal(cc->nodes[0].state, MEMBER);
    assert_int_equal(cc->nodes[1].state, MEMBER_LEAVING);
    assert_int_equal(cc->nodes[2].state, MEMBER);
    assert_int_equal(cc->nodes[3].state, MEMBER_JOINING);
    assert_int_equal(cc->joining, 1);
    assert_int_equal(cc->leaving, 1);
    conf_cluster_free(cc);

    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n"
                "    a: {remote_address: \":1\", state: gone}\n",
                "c.yml:4:38: cluster.nodes.a.state: expected one of member, "
                "joining, leaving, got \"gone\"");
    /* Two nodes before (a, b) and three after (a, b, c): at most 2. */
    cluster_err("cluster:\n  replica_count: 3\n  nodes:\n"
                "    a: {remote_address: \":1\"}\n"
                "    b: {remote_address: \":2\"}\n"
                "    c: {remote_address: \":3\", state: joining}\n",
                "c.yml:2:18: cluster.replica_count: expected an integer in "
                "1..2 (the fewer of the nodes not joining and the nodes not "
                "leaving), got \"3\"");
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n"
                "    a: {remote_address: \":1\", state: leaving}\n",
                "c.yml:4:5: cluster.nodes: expected nodes that are not "
                "leaving, got every node leaving");
    (void)state;
}

static void
test_quorum_defaults_and_bounds(void **state)
{
    static const struct { int n, want; } cases[] = {
        { 1, 1 }, { 2, 2 }, { 3, 2 }, { 4, 3 }, { 5, 3 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), "cluster:\n  replica_count: %d\n"
                 "  nodes: {a: {remote_address: \":1\"}, b: {remote_address: \":2\"},"
                 " c: {remote_address: \":3\"}, d: {remote_address: \":4\"},"
                 " e: {remote_address: \":5\"}}\n", cases[i].n);
        struct cluster_conf *cc = cluster_ok(text);
        assert_int_equal(cc->replica_count, cases[i].n);
        assert_int_equal(cc->read_quorum, cases[i].want);
        assert_int_equal(cc->write_quorum, cases[i].want);
        conf_cluster_free(cc);
    }
    struct cluster_conf *cc = cluster_ok("cluster:\n  replica_count: 3\n"
                                         "  read_quorum: 1\n"
                                         "  write_quorum: 3\n" NODES3);
    assert_int_equal(cc->read_quorum, 1);
    assert_int_equal(cc->write_quorum, 3);
    conf_cluster_free(cc);
    cluster_err("cluster:\n  replica_count: 2\n  read_quorum: 3\n" NODES3,
                "c.yml:3:16: cluster.read_quorum: expected an integer in "
                "1..2 (replica_count), got \"3\"");
    cluster_err("cluster:\n  replica_count: 2\n  write_quorum: 0\n" NODES3,
                "c.yml:3:17: cluster.write_quorum: expected an integer in "
                "1..2 (replica_count), got \"0\"");
    (void)state;
}

/* Which node's anti-entropy passes do something: all but the last of the
 * file; the last too with replica_count 1 and purging on. */
static void
test_antientropy_has_work(void **state)
{
    static const struct {
        int replica_count;
        const char *id;
        int purge_delay_ms, want;
    } cases[] = {
        { 3, "1", 3600000, 1 }, { 3, "2", 3600000, 1 },
        { 3, "3", 3600000, 0 }, { 3, "3", 0, 0 },
        { 1, "3", 3600000, 1 }, { 1, "3", 0, 0 },
        { 1, "1", 0, 1 }, { 3, "9", 3600000, 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "cluster:\n  replica_count: %d\n" NODES3,
                 cases[i].replica_count);
        struct cluster_conf *cc = cluster_ok(text);
        snprintf(text, sizeof(text), "node: {id: \"%s\", local_address: "
                 "\":1\", tombstone_purge_delay_ms: %d}\n", cases[i].id,
                 cases[i].purge_delay_ms);
        struct node_conf *nc = node_ok(text);
        if (conf_antientropy_has_work(cc, nc) != cases[i].want)
            fail_msg("case %zu: node %s, replica_count %d, purge delay %d: "
                     "want %d", i, cases[i].id, cases[i].replica_count,
                     cases[i].purge_delay_ms, cases[i].want);
        conf_node_free(nc);
        conf_cluster_free(cc);
    }
    (void)state;
}

static void
test_bad_address(void **state)
{
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n"
                "    a: {remote_address: 127.0.0.1}\n",
                "c.yml:4:25: cluster.nodes.a.remote_address: expected an "
                "address host:port, [IPv6]:port or :port (port 1..65535), "
                "got \"127.0.0.1\"");
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n"
                "    a:\n      remote_address: host:70000\n",
                "c.yml:5:23: cluster.nodes.a.remote_address: expected an "
                "address host:port, [IPv6]:port or :port (port 1..65535), "
                "got \"host:70000\"");
    node_err("node:\n  id: 1\n  local_address: ::1:8001\n",
             "n.yml:3:18: node.local_address: expected an address "
             "host:port, [IPv6]:port or :port (port 1..65535), got "
             "\"::1:8001\"");
    node_err("node:\n  id: 1\n  local_address: :8001\n"
             "  local_metrics_address: localhost\n",
             "n.yml:4:26: node.local_metrics_address: expected an address "
             "host:port, [IPv6]:port or :port (port 1..65535) or \"\", got "
             "\"localhost\"");
    (void)state;
}

static void
test_duplicate_address(void **state)
{
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n"
                "    a: {remote_address: \"127.0.0.1:8001\"}\n"
                "    b: {remote_address: \":8001\"}\n",
                "c.yml:5:25: cluster.nodes.b.remote_address: expected an "
                "address no other node uses, got \":8001\" (also node "
                "\"a\"'s)");
    (void)state;
}

static void
test_empty_node_list(void **state)
{
    cluster_err("cluster:\n  replica_count: 1\n  nodes: {}\n",
                "c.yml:3:10: cluster.nodes: expected at least one node "
                "(ID: {remote_address: host:port}), got an empty mapping");
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n",
                "c.yml:3:9: cluster.nodes: expected at least one node "
                "(ID: {remote_address: host:port}), got an empty value");
    (void)state;
}

static void
test_node_id_length(void **state)
{
    char text[1024], id[300];
    memset(id, 'x', 256);
    id[256] = '\0';
    snprintf(text, sizeof(text), "cluster:\n  replica_count: 1\n  nodes:\n"
             "    %s: {remote_address: \":1\"}\n", id);
    cluster_err_prefix(text, "c.yml:4:5: cluster.nodes: expected a node id "
                       "of 1..255 bytes, got \"xxxx");
    cluster_err("cluster:\n  replica_count: 1\n  nodes:\n"
                "    \"\": {remote_address: \":1\"}\n",
                "c.yml:4:5: cluster.nodes: expected a node id of 1..255 "
                "bytes, got \"\"");
    id[255] = '\0';
    snprintf(text, sizeof(text), "cluster:\n  replica_count: 1\n  nodes:\n"
             "    %s: {remote_address: \":1\"}\n", id);
    struct cluster_conf *cc = cluster_ok(text);
    assert_int_equal(strlen(cc->nodes[0].id), 255);
    conf_cluster_free(cc);
    (void)state;
}

static void
test_run_dir_too_long(void **state)
{
    char text[1024], dir[200];
    memset(dir, 'r', 120);
    dir[0] = '/';
    dir[120] = '\0';
    snprintf(text, sizeof(text), "node:\n  id: 1\n  local_address: :8001\n"
             "  run_dir: %s\n", dir);
    /* The message quotes the first 64 bytes of the value. */
    char want[CONF_ERR_MAX];
    snprintf(want, sizeof(want), "n.yml:4:12: node.run_dir: expected a "
             "directory path of at most 93 bytes (a socket under it, like "
             "\"/storage-1.ipc\", must fit in the 108-byte unix socket path), "
             "got \"%.64s...\" (120 bytes)", dir);
    node_err(text, want);
    /* The derived default is checked too, pointing at data_dir. */
    snprintf(text, sizeof(text), "node:\n  id: 1\n  local_address: :8001\n"
             "  data_dir: %.*s\n", 90, dir);
    char err[CONF_ERR_MAX];
    struct node_conf *nc;
    assert_int_equal(conf_parse_node("n.yml", text, strlen(text), &nc, err,
                                     sizeof(err)), -1);
    assert_true(strncmp(err, "n.yml:4:13: node.run_dir: expected a directory "
                        "path of at most 93 bytes", 67) == 0);
    (void)state;
}

static void
test_tls_pairing(void **state)
{
    node_err("node:\n  id: 1\n  local_address: :8001\n  tls:\n"
             "    cert_file: a.crt\n",
             "n.yml:5:5: node.tls.key_file: required key is missing "
             "(node.tls.cert_file is set: give both cert_file and key_file, "
             "or neither)");
    struct node_conf *nc = node_ok("node:\n  id: 1\n  local_address: :8001\n"
                                   "  tls: {cert_file: a.crt, key_file: "
                                   "/k/a.key, ca_file: ca.crt}\n");
    assert_string_equal(nc->tls_cert, "/etc/rzkv/a.crt");
    assert_string_equal(nc->tls_key, "/k/a.key");
    assert_string_equal(nc->tls_ca, "/etc/rzkv/ca.crt");
    conf_node_free(nc);
    (void)state;
}

/* ---- what loads --------------------------------------------------------- */

static void
test_minimal_node_defaults(void **state)
{
    struct node_conf *nc = node_ok("node:\n  id: 7\n"
                                   "  local_address: 127.0.0.1:8001\n");
    assert_string_equal(nc->path, "/etc/rzkv/n.yml");
    assert_string_equal(nc->id, "7");
    assert_string_equal(nc->local_address, "127.0.0.1:8001");
    assert_string_equal(nc->local_metrics_address, "");
    assert_string_equal(nc->data_dir, "/etc/rzkv/data/7");
    assert_string_equal(nc->run_dir, "/etc/rzkv/data/7/run");
    assert_int_equal(nc->storage_workers, 1);
    assert_int_equal(nc->coordinator_workers, 1);
    assert_int_equal(nc->durability, DURABILITY_FULL);
    assert_int_equal(nc->max_value_size, 16777216);
    assert_int_equal(nc->anti_entropy_interval_ms, 600000);
    assert_int_equal(nc->tombstone_purge_delay_ms, 3600000);
    assert_string_equal(nc->log_file, "");
    assert_int_equal(nc->log_level, LOG_LEVEL_INFO);
    assert_string_equal(nc->tls_cert, "");
    assert_string_equal(nc->tls_key, "");
    assert_string_equal(nc->tls_ca, "");
    conf_node_free(nc);
    (void)state;
}

static void
test_full_node(void **state)
{
    struct node_conf *nc = node_ok(
        "node:\n"
        "  id: n1\n"
        "  local_address: \"[::1]:8001\"\n"
        "  local_metrics_address: :9001\n"
        "  data_dir: ./d/../d2/./x\n"
        "  run_dir: /tmp/r\n"
        "  storage_workers: 64\n"
        "  coordinator_workers: 3\n"
        "  durability: normal\n"
        "  max_value_size: 1024\n"
        "  anti_entropy_interval_ms: 0\n"
        "  tombstone_purge_delay_ms: 0\n"
        "  log: {file: syslog, level: debug}\n"
        "  tls:\n");
    assert_string_equal(nc->local_address, "[::1]:8001");
    assert_string_equal(nc->local_metrics_address, ":9001");
    assert_string_equal(nc->data_dir, "/etc/rzkv/d/../d2/x");
    assert_string_equal(nc->run_dir, "/tmp/r");
    assert_int_equal(nc->storage_workers, 64);
    assert_int_equal(nc->coordinator_workers, 3);
    assert_int_equal(nc->durability, DURABILITY_NORMAL);
    assert_int_equal(nc->max_value_size, 1024);
    assert_int_equal(nc->anti_entropy_interval_ms, 0);
    assert_int_equal(nc->tombstone_purge_delay_ms, 0);
    assert_string_equal(nc->log_file, "syslog");
    assert_int_equal(nc->log_level, LOG_LEVEL_DEBUG);
    conf_node_free(nc);

    nc = node_ok("node: {id: 1, local_address: \":1\", log: {file: rzkvd.log}}\n");
    assert_string_equal(nc->log_file, "/etc/rzkv/rzkvd.log");
    conf_node_free(nc);
    (void)state;
}

static void
test_int_node_ids_and_order(void **state)
{
    struct cluster_conf *cc = cluster_ok(
        "cluster:\n  replica_count: 2\n  seed: 4294967295\n  nodes:\n"
        "    10: {remote_address: 127.0.0.1:8010}\n"
        "    2: {remote_address: 127.0.0.1:8002}\n"
        "    abc: {remote_address: \"[::1]:8003\"}\n"
        "    007: {remote_address: \":8007\"}\n");
    assert_int_equal(cc->seed, 4294967295u);
    assert_int_equal(cc->node_count, 4);
    assert_string_equal(cc->nodes[0].id, "10");
    assert_string_equal(cc->nodes[1].id, "2");
    assert_string_equal(cc->nodes[2].id, "abc");
    assert_string_equal(cc->nodes[3].id, "007");
    assert_string_equal(cc->nodes[0].remote_address, "127.0.0.1:8010");
    assert_string_equal(cc->nodes[3].remote_address, ":8007");
    assert_int_equal(cc->timeout_ms, 2000);
    assert_int_equal(cc->max_clock_skew_ms, 10000);
    assert_int_equal(conf_cluster_find(cc, "2"), 1);
    assert_int_equal(conf_cluster_find(cc, "7"), -1);
    assert_int_equal(conf_cluster_find(cc, "007"), 3);
    conf_cluster_free(cc);

    struct node_conf *nc = node_ok("node: {id: 2, local_address: \":1\"}\n");
    cc = cluster_ok("cluster:\n  replica_count: 1\n" NODES3);
    char err[CONF_ERR_MAX];
    assert_int_equal(conf_node_in_cluster(nc, cc, err, sizeof(err)), 0);
    free(nc->id);
    nc->id = strdup("4");
    assert_int_equal(conf_node_in_cluster(nc, cc, err, sizeof(err)), -1);
    assert_string_equal(err, "/etc/rzkv/n.yml: node.id: expected one of the "
                        "nodes of c.yml, got \"4\"");
    conf_node_free(nc);
    conf_cluster_free(cc);
    (void)state;
}

static void
test_parse_address(void **state)
{
    static const struct {
        const char *addr, *host;
        int port;
    } good[] = {
        { "127.0.0.1:8001", "127.0.0.1", 8001 },
        { "example.com:1", "example.com", 1 },
        { ":65535", "127.0.0.1", 65535 },
        { "[::1]:80", "::1", 80 },
        { "[fe80::1%eth0]:80", "fe80::1%eth0", 80 },
        { "0.0.0.0:08001", "0.0.0.0", 8001 },
    };
    static const char *const bad[] = {
        "", ":", "host", "host:", "host:0", "host:65536", "host:-1",
        "host:+80", "host:80x", "host:123456", "ho st:80", "::1:80", "[]:80",
        "[::1]80", "[::1]", "[1.2.3.4]:80", "a/b:80", "[::1]:", "\t:80",
    };
    char host[64];
    int port;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(conf_parse_address(good[i].addr, host, sizeof(host),
                                            &port), 0);
        assert_string_equal(host, good[i].host);
        assert_int_equal(port, good[i].port);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (conf_parse_address(bad[i], host, sizeof(host), &port) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    /* A host that does not fit the caller's buffer is refused. */
    assert_int_equal(conf_parse_address("abcdefgh:1", host, 8, &port), -1);
    /* Hosts are at most CONF_MAX_HOST bytes whatever the buffer, so an
     * address the loader accepted always fits a 256-byte buffer later
     * (found by fuzz_conf_cluster). */
    char addr[CONF_MAX_HOST + 16];
    memset(addr, 'h', CONF_MAX_HOST);
    snprintf(addr + CONF_MAX_HOST, 16, ":80");
    assert_int_equal(conf_parse_address(addr, NULL, 0, &port), 0);
    memset(addr, 'h', CONF_MAX_HOST + 1);
    snprintf(addr + CONF_MAX_HOST + 1, 15, ":80");
    assert_int_equal(conf_parse_address(addr, NULL, 0, &port), -1);
    (void)state;
}

/* ---- real files --------------------------------------------------------- */

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Relative paths follow the file, not the working directory. */
static void
test_relative_paths_follow_file(void **state)
{
    char tmp[] = "/tmp/rzkv-conf.XXXXXX", sub[PATH_MAX], path[2 * PATH_MAX];
    char cwd[PATH_MAX], want[3 * PATH_MAX], err[CONF_ERR_MAX];
    struct node_conf *nc;

    assert_non_null(mkdtemp(tmp));
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(sub, sizeof(sub), "%s/etc", tmp);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/node.yml", sub);
    write_file(path, "node:\n  id: 1\n  local_address: :8001\n"
               "  data_dir: ../var/data\n  log: {file: log/rzkvd.log}\n");

    /* Load it through a relative name from the temp dir itself... */
    assert_int_equal(chdir(tmp), 0);
    assert_int_equal(conf_load_node("etc/node.yml", &nc, err, sizeof(err)),
                     0);
    snprintf(want, sizeof(want), "%s/etc/../var/data", tmp);
    assert_string_equal(nc->data_dir, want);
    snprintf(want, sizeof(want), "%s/etc/../var/data/run", tmp);
    assert_string_equal(nc->run_dir, want);
    snprintf(want, sizeof(want), "%s/etc/log/rzkvd.log", tmp);
    assert_string_equal(nc->log_file, want);
    assert_string_equal(nc->path, "etc/node.yml");
    conf_node_free(nc);

    /* ...and from / : the same absolute results. */
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(conf_load_node(path, &nc, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/etc/../var/data", tmp);
    assert_string_equal(nc->data_dir, want);
    conf_node_free(nc);

    /* A broken file on disk: FILE:LINE:COLUMN names the path given. */
    write_file(path, "node:\n  id: 1\n  local_adress: :8001\n");
    assert_int_equal(conf_load_node(path, &nc, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:3:3: node.local_adress: unknown key, "
             "expected one of id, local_address, local_metrics_address, "
             "data_dir, run_dir, storage_workers, coordinator_workers, "
             "durability, max_value_size, anti_entropy_interval_ms, "
             "tombstone_purge_delay_ms, log, tls", path);
    assert_string_equal(err, want);

    assert_int_equal(chdir(cwd), 0);
    unlink(path);
    rmdir(sub);
    rmdir(tmp);
    (void)state;
}

static void
test_example_configs_load(void **state)
{
    const char *src = getenv("RZKV_SRCDIR");
    char path[PATH_MAX], err[CONF_ERR_MAX], want[3 * PATH_MAX];
    static const struct {
        const char *dir, *prefix;
        int count;
    } sets[] = {
        { "3-local-nodes", "", 3 },
        { "5-nodes", "node-", 5 },
    };
    /* make check sets it; run by hand, say what is missing. */
    if (src == NULL)
        fail_msg("RZKV_SRCDIR is not set: the example configs under etc/ "
                 "are not found");
    for (size_t s = 0; s < 2; s++) {
        struct cluster_conf *cc;
        snprintf(path, sizeof(path), "%s/etc/%s/cluster.yml", src,
                 sets[s].dir);
        if (conf_load_cluster(path, &cc, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        assert_int_equal(cc->node_count, sets[s].count);
        assert_int_equal(cc->replica_count, 3);
        assert_int_equal(cc->read_quorum, 2);
        assert_int_equal(cc->write_quorum, 2);
        assert_int_equal(cc->seed, 0);
        for (int i = 1; i <= sets[s].count; i++) {
            struct node_conf *nc;
            char id[32], addr[32], real[PATH_MAX];
            snprintf(path, sizeof(path), "%s/etc/%s/node-%d.yml", src,
                     sets[s].dir, i);
            if (conf_load_node(path, &nc, err, sizeof(err)) != 0)
                fail_msg("%s", err);
            snprintf(id, sizeof(id), "%s%d", sets[s].prefix, i);
            snprintf(addr, sizeof(addr), "127.0.0.1:800%d", i);
            assert_string_equal(nc->id, id);
            assert_string_equal(nc->local_address, addr);
            snprintf(addr, sizeof(addr), "127.0.0.1:900%d", i);
            assert_string_equal(nc->local_metrics_address, addr);
            int k = conf_cluster_find(cc, id);
            assert_int_equal(k, i - 1);
            assert_int_equal(conf_node_in_cluster(nc, cc, err, sizeof(err)),
                             0);
            assert_string_equal(cc->nodes[k].remote_address,
                                nc->local_address);
            snprintf(path, sizeof(path), "%s/etc/%s", src, sets[s].dir);
            assert_non_null(realpath(path, real));
            snprintf(want, sizeof(want), "%s/data/node-%d", real, i);
            assert_string_equal(nc->data_dir, want);
            snprintf(want, sizeof(want), "%s/run/node-%d", real, i);
            assert_string_equal(nc->run_dir, want);
            assert_int_equal(nc->storage_workers, 1);
            assert_int_equal(nc->durability, DURABILITY_FULL);
            conf_node_free(nc);
        }
        conf_cluster_free(cc);
    }
    (void)state;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_directory_not_file),
        cmocka_unit_test(test_file_too_large),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_empty_and_non_mapping),
        cmocka_unit_test(test_two_documents),
        cmocka_unit_test(test_anchor_alias_tag_refused),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_nul_byte_refused),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_integer_bounds),
        cmocka_unit_test(test_missing_required_key),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_duplicate_node_id),
        cmocka_unit_test(test_replica_count_bounds),
        cmocka_unit_test(test_member_states),
        cmocka_unit_test(test_quorum_defaults_and_bounds),
        cmocka_unit_test(test_antientropy_has_work),
        cmocka_unit_test(test_bad_address),
        cmocka_unit_test(test_duplicate_address),
        cmocka_unit_test(test_empty_node_list),
        cmocka_unit_test(test_node_id_length),
        cmocka_unit_test(test_run_dir_too_long),
        cmocka_unit_test(test_tls_pairing),
        cmocka_unit_test(test_minimal_node_defaults),
        cmocka_unit_test(test_full_node),
        cmocka_unit_test(test_int_node_ids_and_order),
        cmocka_unit_test(test_parse_address),
        cmocka_unit_test(test_relative_paths_follow_file),
        cmocka_unit_test(test_example_configs_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
