/*
 * sup_control.c - the control socket rzkvctl talks to.
 *
 * NAME
 *	sup_control - RUN_DIR/control.sock: one command in, one reply out
 * DESCRIPTION
 *	An AF_UNIX stream socket, mode 0600 (the run directory is 0700 too):
 *	whoever can connect can stop the node.  A client sends one line and
 *	gets one reply, then the connection closes:
 *
 *	  status   one line of JSON (below)
 *	  stop     "ok: stopping"; the node then stops (sup_stop.c)
 *	  reload   "ok: MESSAGE" or "error: MESSAGE" (sup_reload.c)
 *	  repair   "ok: MESSAGE" or "error: MESSAGE": coordinator 0 starts an
 *	           anti-entropy pass now (control_repair below)
 *
 *	anything else gets "error: ...".  A client that sends nothing for 5 s
 *	or more than 256 bytes without a newline is dropped: the supervisor
 *	never waits on a client.
 *
 *	status:
 *	  {"id":"1","address":"127.0.0.1:8001","pid":42,"uptime_s":12,
 *	   "state":"starting|serving|degraded|stopping",
 *	   "load_bytes":123456,"keys":1000,
 *	   "health":"serving"|"why /health says 503",
 *	   "workers":[{"role":"storage","instance":0,"pid":43,
 *	     "state":"starting|ready|backoff|failed|stopped|stopping",
 *	     "generation":0,"restarts":0,"backoff_ms":0,"uptime_s":12,
 *	     "last_exit":"exit 1"|"signal 9 (core dumped)"|"",
 *	     "reason":"why the slot failed"|"",
 *	     storage: "keys":500,"load_bytes":61728,"epoch":3,
 *	     coordinator: "inflight":0,"peers_connected":2,"peers":2,
 *	       "antientropy_last_pass_ms":0|Unix ms,
 *	       "antientropy_clean_pass_ms":0|Unix ms}, ...]}
 *	(load, keys, health and the worker numbers come from the workers'
 *	counters files, sup_metrics.c; a worker whose file is missing has
 *	none of its numbers)
 * SEE ALSO
 *	ctl/cmd_node.c (the client), rzkvctl(1)
 */
#include "config.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sup.h"

#define CONTROL_MAX_LINE    256
#define CONTROL_TIMEOUT_S   5

static void
json_string(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            evbuffer_add_printf(out, "\\%c", *p);
        else if (*p < 0x20)
            evbuffer_add_printf(out, "\\u%04x", *p);
        else
            evbuffer_add(out, p, 1);
    }
    evbuffer_add(out, "\"", 1);
}

static void
child_json(const struct sup_child *c, int64_t now, struct evbuffer *out)
{
    int64_t up = c->pid > 0 ? (now - c->started_at) / 1000 : 0;
    /* A worker up long enough starts over at the minimum when it dies
     * (sup_child_backoff_ms): show that, not the value of its last death. */
    int backoff = c->pid > 0 && now - c->started_at >=
                  c->group->backoff.reset_after_ms ? 0 : c->backoff_ms;
    evbuffer_add_printf(out, "{\"role\":");
    json_string(out, c->group->name);
    evbuffer_add_printf(out, ",\"instance\":%d,\"pid\":%ld,\"state\":\"%s\","
                        "\"generation\":%u,\"restarts\":%d,"
                        "\"backoff_ms\":%d,\"uptime_s\":%lld,"
                        "\"last_exit\":",
                        c->instance, (long)c->pid, child_state_str(c->state),
                        c->generation > 0 ? c->generation - 1 : 0,
                        c->restarts, backoff, (long long)up);
    json_string(out, c->last_exit);
    evbuffer_add_printf(out, ",\"reason\":");
    json_string(out, c->fail_reason);
    sup_metrics_worker_json(c, out);
    evbuffer_add_printf(out, "}");
}

void
sup_status_json(struct sup *s, struct evbuffer *out)
{
    int64_t now = sup_now_ms();
    int first = 1;

    evbuffer_add_printf(out, "{\"id\":");
    json_string(out, s->node->id);
    evbuffer_add_printf(out, ",\"address\":");
    json_string(out, s->node->local_address);
    evbuffer_add_printf(out, ",\"pid\":%ld,\"uptime_s\":%lld,"
                        "\"state\":\"%s\",", (long)getpid(),
                        (long long)(now - s->started_at) / 1000,
                        sup_state_str(s->state));
    sup_metrics_node_json(s, out);
    evbuffer_add_printf(out, "\"workers\":[");
    for (int r = 0; r < SUP_NROLES; r++)
        for (int i = 0; i < s->groups[r].count; i++) {
            if (!first)
                evbuffer_add(out, ",", 1);
            first = 0;
            child_json(&s->groups[r].children[i], now, out);
        }
    evbuffer_add_printf(out, "]}\n");
}

/* The reply is out: close. */
static void
control_written_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_free(bev);
}

static void
control_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)what; (void)arg;
    bufferevent_free(bev);
}

/*
 * rzkvctl repair: tell coordinator 0, the one that runs anti-entropy, to
 * pass now.  Its log says when the pass ends and what it copied.
 */
static int
control_repair(struct sup *s, char *msg, size_t len)
{
    struct sup_child *c = &s->groups[SUP_COORD].children[0];

    if (s->node->anti_entropy_interval_ms <= 0) {
        snprintf(msg, len, "anti-entropy is off on node %s "
                 "(node.anti_entropy_interval_ms 0)", s->node->id);
        return -1;
    }
    if (s->groups[SUP_COORD].count == 0 || c->state != CHILD_READY) {
        snprintf(msg, len, "coordinator 0 of node %s is not running",
                 s->node->id);
        return -1;
    }
    sup_send(c, "repair\n");
    log_info("repair: coordinator 0 told to start an anti-entropy pass");
    if (!conf_antientropy_has_work(s->cluster, s->node))
        snprintf(msg, len, "node %s is last in the cluster file and "
                 "compares nothing itself: the other nodes' passes compare "
                 "their keys with it", s->node->id);
    else
        snprintf(msg, len, "anti-entropy pass started on node %s (its log "
                 "says when it ends)", s->node->id);
    return 0;
}

static void
control_command(struct sup *s, const char *line, struct evbuffer *out)
{
    char msg[CONF_ERR_MAX];

    if (strcmp(line, "status") == 0) {
        sup_status_json(s, out);
    } else if (strcmp(line, "stop") == 0) {
        evbuffer_add_printf(out, "ok: stopping node %s\n", s->node->id);
        sup_stop(s, "rzkvctl stop");
    } else if (strcmp(line, "reload") == 0) {
        int rc = sup_reload(s, msg, sizeof(msg));
        evbuffer_add_printf(out, "%s: %s\n", rc == 0 ? "ok" : "error", msg);
    } else if (strcmp(line, "repair") == 0) {
        int rc = control_repair(s, msg, sizeof(msg));
        evbuffer_add_printf(out, "%s: %s\n", rc == 0 ? "ok" : "error", msg);
    } else {
        log_warnx("control: unknown command \"%.32s\"", line);
        evbuffer_add_printf(out, "error: unknown command \"%.32s\" "
                            "(status, stop, reload, repair)\n", line);
    }
}

static void
control_read_cb(struct bufferevent *bev, void *arg)
{
    struct sup *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);

    if (line == NULL) {
        if (evbuffer_get_length(in) > CONTROL_MAX_LINE) {
            log_warnx("control: over-long command line, dropping client");
            bufferevent_free(bev);
        }
        return;
    }
    bufferevent_disable(bev, EV_READ);
    bufferevent_setcb(bev, NULL, control_written_cb, control_event_cb, s);
    control_command(s, line, bufferevent_get_output(bev));
    free(line);
}

static void
control_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                  struct sockaddr *sa, int salen, void *arg)
{
    struct sup *s = arg;
    struct timeval timeout = { CONTROL_TIMEOUT_S, 0 };
    (void)l; (void)sa; (void)salen;

    struct bufferevent *bev = bufferevent_socket_new(s->base, fd,
                                                     BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        log_warnx("control: cannot accept a client");
        close(fd);
        return;
    }
    bufferevent_setcb(bev, control_read_cb, NULL, control_event_cb, s);
    bufferevent_set_timeouts(bev, &timeout, &timeout);
    bufferevent_enable(bev, EV_READ);
}

int
sup_control_open(struct sup *s)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };

    if (strlen(s->control_path) >= sizeof(sun.sun_path)) {
        log_warnx("control socket path %s is too long", s->control_path);
        return -1;
    }
    strcpy(sun.sun_path, s->control_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_warn("control socket");
        return -1;
    }
    unlink(s->control_path);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
        chmod(s->control_path, 0600) != 0) {
        log_warn("cannot bind control socket %s", s->control_path);
        close(fd);
        return -1;
    }
    s->control = evconnlistener_new(s->base, control_accept_cb, s,
                                    LEV_OPT_CLOSE_ON_FREE |
                                    LEV_OPT_CLOSE_ON_EXEC, 16, fd);
    if (s->control == NULL) {
        log_warn("cannot listen on control socket %s", s->control_path);
        close(fd);
        return -1;
    }
    return 0;
}

void
sup_control_close(struct sup *s)
{
    if (s->control != NULL) {
        evconnlistener_free(s->control);
        s->control = NULL;
    }
    unlink(s->control_path);
}
