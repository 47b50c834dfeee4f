/*
 * rzkv.h - the rzkv client library (librzkv).
 *
 * A client holds one connection per node address it was given and sends
 * every request to one node, which coordinates it across the key's
 * replicas.  When a node refuses connections, is stopping, or cannot reach
 * a quorum, the request goes to the next address.  A write that was sent
 * and then timed out is reported as RZKV_UNKNOWN and is never sent again:
 * it may or may not take effect, and resending it blindly could reorder it
 * after a later write.
 *
 * One client may be shared by many threads.  Keys and values are byte
 * strings (NULs allowed).  Every call returns an rzkv_status and, if err is
 * not NULL, fills it with the status, a one-line message and the address
 * that answered.  See rzkv(3).
 *
 *   rzkv_client *c = rzkv_connect(addrs, 3, NULL, &err);
 *   rzkv_set(c, "k", 1, "v", 1, NULL, NULL, &err);
 *   rzkv_get(c, "k", 1, NULL, &value, &len, NULL, &err);
 *   rzkv_free(value);
 *   rzkv_close(c);
 *
 * The _async calls return at once and report through a callback, so that
 * one thread can keep many requests in flight; the synchronous calls are
 * the same requests, waited for.
 */
#ifndef RZKV_H
#define RZKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The outcome of a call; the Cluster API's statuses, folded for clients. */
typedef enum rzkv_status {
    RZKV_OK = 0,
    RZKV_NOT_FOUND,     /* the key is absent or deleted */
    RZKV_UNAVAILABLE,   /* no node could serve it; a write was not applied */
    RZKV_UNKNOWN,       /* a write timed out: it may or may not apply */
    RZKV_INVALID,       /* bad request (empty key, too large, bad address) */
    RZKV_ERROR,         /* anything else (server failure, bad reply, memory) */
} rzkv_status;

typedef enum rzkv_consistency {
    RZKV_QUORUM = 0,    /* a majority of the key's replicas (the default) */
    RZKV_ONE,
    RZKV_ALL,
} rzkv_consistency;

#define RZKV_MESSAGE_MAX    512
#define RZKV_ADDRESS_MAX    256

typedef struct rzkv_error {
    rzkv_status status;
    char message[RZKV_MESSAGE_MAX];  /* the server's or the library's */
    char address[RZKV_ADDRESS_MAX];  /* the address that answered, or "" */
} rzkv_error;

/*
 * Client options; a zeroed struct (or NULL) means every default.
 *
 * timeout_ms is the time a node may take to reach its quorum; 0 leaves it
 * to the cluster (cluster.yml timeout_ms).  The client waits for the
 * node's answer that long plus a grace (a quarter, at least 250 ms),
 * assuming 2000 ms when the timeout is left to the cluster.
 */
typedef struct rzkv_options {
    unsigned timeout_ms;            /* per request, 0: the cluster's */
    unsigned connect_timeout_ms;    /* wait for a connection to an address
                                     * before trying the next, 0: 1000 */
    rzkv_consistency consistency;   /* default consistency */
    const char *tls_ca_file;        /* CA bundle for tls+tcp:// addresses */
} rzkv_options;

/* Per-call settings; NULL uses the client's options.  A zeroed struct asks
 * for RZKV_QUORUM and the client's timeout. */
typedef struct rzkv_req {
    rzkv_consistency consistency;
    unsigned timeout_ms;
} rzkv_req;

#define RZKV_WRITER_MAX     128

/* The version of a key: (epoch, counter, writer, nonce), in that order. */
typedef struct rzkv_stamp {
    uint64_t epoch;
    uint64_t counter;
    char writer[RZKV_WRITER_MAX];   /* "NODE-ID/cN", NUL-terminated */
    uint64_t nonce;
} rzkv_stamp;

typedef struct rzkv_client rzkv_client;

/*
 * Connect to a cluster through any of its nodes.  Each address is
 * "host:port", ":port" (127.0.0.1), or an nng URL (tcp://, tls+tcp://,
 * ipc://).  Connections are made in the background and remade after a
 * failure; NULL (with err set to RZKV_INVALID or RZKV_ERROR) only if an
 * address is malformed or memory runs out.
 */
rzkv_client *rzkv_connect(const char *const *addrs, size_t naddrs,
                          const rzkv_options *opts, rzkv_error *err);
/* Cancel whatever is still in flight (see rzkv_wait) and free c. */
void rzkv_close(rzkv_client *c);

/*
 * Read a key.  On RZKV_OK *value is a malloc'd copy (NUL-terminated for
 * convenience; *value_len excludes it) that the caller frees with
 * rzkv_free; stamp may be NULL.
 */
rzkv_status rzkv_get(rzkv_client *c, const void *key, size_t key_len,
                     const rzkv_req *req, void **value, size_t *value_len,
                     rzkv_stamp *stamp, rzkv_error *err);
/* Write a key; stamp (may be NULL) receives the version written. */
rzkv_status rzkv_set(rzkv_client *c, const void *key, size_t key_len,
                     const void *value, size_t value_len,
                     const rzkv_req *req, rzkv_stamp *stamp,
                     rzkv_error *err);
/* Delete a key (a write of a tombstone); deleting an absent key is OK. */
rzkv_status rzkv_del(rzkv_client *c, const void *key, size_t key_len,
                     const rzkv_req *req, rzkv_stamp *stamp,
                     rzkv_error *err);

typedef struct rzkv_node_info {
    char *id;
    char *address;
    int reachable;              /* from the answering node */
    char *error;                /* why not, or "" */
} rzkv_node_info;

typedef struct rzkv_cluster_info {
    char *node_id;              /* the node that answered */
    unsigned replica_count;
    unsigned read_quorum;
    unsigned write_quorum;
    unsigned seed;
    size_t node_count;
    rzkv_node_info *nodes;
} rzkv_cluster_info;

/* The cluster as one node sees it; free with rzkv_info_free. */
rzkv_status rzkv_info(rzkv_client *c, const rzkv_req *req,
                      rzkv_cluster_info **info, rzkv_error *err);
void rzkv_info_free(rzkv_cluster_info *info);
/*
 * Node i's part in a membership change, by the answering node's cluster
 * file: "member", "joining" or "leaving" (rzkv(7)).  NULL if i is out of
 * range.  Valid until rzkv_info_free().
 */
const char *rzkv_info_node_state(const rzkv_cluster_info *info, size_t i);

typedef struct rzkv_key {
    void *key;                  /* NUL-terminated for convenience */
    size_t len;
    rzkv_stamp stamp;
} rzkv_key;

/* What rzkv_keys_all() says of each key besides its stamp. */
typedef struct rzkv_key_state {
    int deleted;                /* a tombstone, not purged yet */
    uint64_t deleted_ms_ago;    /* if deleted: when the node stored the
                                 * tombstone, by its own clock */
} rzkv_key_state;

typedef struct rzkv_key_page {
    size_t count;
    rzkv_key *keys;             /* in key order */
    void *next_key;             /* start of the next page; NULL at the end */
    size_t next_key_len;
    rzkv_key_state *states;     /* rzkv_keys_all(): one per key; rzkv_keys():
                                 * NULL */
} rzkv_key_page;

/*
 * One page of the keys held by one node (the first that answers), in key
 * order, from start (NULL: the first key), at most limit keys (0: the
 * server's default).  Deleted keys are left out.  Every node holds the keys
 * it is a replica of: all keys when replica_count equals the node count.
 * Free the page with rzkv_key_page_free.
 */
rzkv_status rzkv_keys(rzkv_client *c, const void *start, size_t start_len,
                      unsigned limit, const rzkv_req *req,
                      rzkv_key_page **page, rzkv_error *err);
/*
 * rzkv_keys, listing deleted keys too: those whose tombstones anti-entropy
 * has not purged yet.  page->states says which keys are deleted, and how
 * long ago.
 */
rzkv_status rzkv_keys_all(rzkv_client *c, const void *start,
                          size_t start_len, unsigned limit,
                          const rzkv_req *req, rzkv_key_page **page,
                          rzkv_error *err);
void rzkv_key_page_free(rzkv_key_page *page);

/* RZKV_OK if a node answers a health check (err->address says which). */
rzkv_status rzkv_health(rzkv_client *c, const rzkv_req *req,
                        rzkv_error *err);

void rzkv_free(void *p);

/*
 * Asynchronous requests.  Each _async call checks its arguments, sends the
 * request on its way and returns: RZKV_OK means cb will be called exactly
 * once with the outcome; any other status (with err filled in) means the
 * request was refused and cb will not be called.  The outcome is the one the
 * synchronous call would return: the same failover, timeouts, statuses and
 * messages.
 *
 * cb runs on a thread of the library's, possibly before the _async call
 * has returned, never inside it.  It must not block: it may submit more
 * _async requests, but must not make synchronous calls or call rzkv_wait
 * or rzkv_close (the synchronous calls and rzkv_wait return RZKV_INVALID
 * there).  Everything res points to, value included, is valid only until
 * cb returns.
 */
typedef struct rzkv_result {
    rzkv_status status;
    const char *message;        /* the server's or the library's, never NULL */
    const char *address;        /* the address that answered, or "" */
    const void *value;          /* rzkv_get_async, RZKV_OK: the value (not
                                 * NUL-terminated); otherwise NULL */
    size_t value_len;
    const rzkv_stamp *stamp;    /* get, set, del, RZKV_OK: the version read
                                 * or written; otherwise NULL */
} rzkv_result;

typedef void (*rzkv_callback)(void *arg, const rzkv_result *res);

rzkv_status rzkv_get_async(rzkv_client *c, const void *key, size_t key_len,
                           const rzkv_req *req, rzkv_callback cb, void *arg,
                           rzkv_error *err);
rzkv_status rzkv_set_async(rzkv_client *c, const void *key, size_t key_len,
                           const void *value, size_t value_len,
                           const rzkv_req *req, rzkv_callback cb, void *arg,
                           rzkv_error *err);
rzkv_status rzkv_del_async(rzkv_client *c, const void *key, size_t key_len,
                           const rzkv_req *req, rzkv_callback cb, void *arg,
                           rzkv_error *err);
rzkv_status rzkv_health_async(rzkv_client *c, const rzkv_req *req,
                              rzkv_callback cb, void *arg, rzkv_error *err);

/*
 * Wait until no request is in flight on c: every _async callback has
 * returned, including those of requests submitted by callbacks meanwhile
 * (so stop submitting first), and every synchronous call of other threads
 * has returned.  RZKV_INVALID if called from a callback or with c NULL.
 *
 * rzkv_close does not wait: it cancels what is still in flight.  Each
 * cancelled request's callback is called before rzkv_close returns, with
 * RZKV_UNKNOWN for a write already sent and RZKV_ERROR otherwise; none is
 * called after.
 */
rzkv_status rzkv_wait(rzkv_client *c);

/* "OK", "NOT_FOUND", "UNAVAILABLE", "UNKNOWN", "INVALID", "ERROR". */
const char *rzkv_status_str(rzkv_status status);
/* "one", "quorum", "all"; rzkv_consistency_parse returns -1 if unknown. */
const char *rzkv_consistency_str(rzkv_consistency c);
int rzkv_consistency_parse(const char *s, rzkv_consistency *out);

#ifdef __cplusplus
}
#endif

#endif
