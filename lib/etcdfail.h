/*
 * etcdfail.h - etcd.c's own structures and the helpers of etcdfail.c
 * (failure text, socket counting).  Private to etcd.c and etcdfail.c.
 */
#ifndef RSV_ETCDFAIL_H
#define RSV_ETCDFAIL_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include "backoff.h"
#include "etcd.h"
#include "log.h"

#define ERROR_BODY_MAX 512
/* A range over 100k keys takes ~1.5 s on loopback; anything that is not a
 * stream and takes a minute is stuck. */
#define UNARY_TIMEOUT_MS 60000L
/* Room for a failure's description: the URL, curl's error buffer or
 * etcd's message, and the timeout's name. */
#define WHY_MAX (CURL_ERROR_SIZE + ERROR_BODY_MAX + 256)

typedef struct rsv_etcd_request request;

struct rsv_etcd {
    rsv_loop *loop;
    CURLM *multi;
    rsv_timer *curl_timer;
    char **endpoints;
    size_t n_endpoints, current;
    char *ca_file, *cert_file, *key_file;
    long dial_timeout_ms;
    int in_curl;     /* inside curl_multi_socket_action: handles may not be removed */
    request *doomed; /* cancelled while in_curl */
    request *all;    /* every request with a curl handle in the multi */
    request *waiting, **waiting_tail; /* requests waiting for a token */
    uint64_t last_heard;
    /* header.revision of the last good status probe, and when (loop ms):
     * discovery compares it with what its watch streams delivered. */
    int64_t cluster_revision;
    uint64_t cluster_revision_ms;
    /* header.cluster_id last seen in any answer (0: none yet), and how
     * often it changed: another cluster behind the same endpoints. */
    uint64_t cluster_id;
    uint64_t cluster_changes;
    uint64_t failovers;
    /* Open TCP connections (sockets curl opened and has not closed yet),
     * by file descriptor, with the endpoint each went to. */
    struct {
        curl_socket_t fd;
        size_t endpoint;
    } * conns;
    size_t n_conns, conns_cap;
    /* Why the member in use was last left; the streams ended on it carry
     * this text to their owners. */
    char failure[WHY_MAX + 64];
    /* One limiter per repeated cause (rule 6 of etcd.h). */
    rsv_log_limit lim_failover, lim_probe, lim_auth_wait, lim_auth, lim_password;
    /* auth */
    char *username, *password_file;
    char *token;
    unsigned token_generation;
    request *auth_req;
    rsv_timer *auth_timer;
    rsv_backoff auth_backoff;
    uint64_t authentications;
    /* health probe of the member in use */
    rsv_timer *probe_timer;
    request *probe_req;
};

struct rsv_etcd_request {
    rsv_etcd *etcd;
    CURL *easy;
    struct curl_slist *headers;
    char *path, *body;
    unsigned flags;
    size_t endpoint; /* index the request went to */
    unsigned token_generation;
    rsv_etcd_data_cb data_cb;
    rsv_etcd_done_cb done_cb;
    void *arg;
    int cancelled, aborted, bad;
    char bad_why[256];        /* what rsv_etcd_mark_bad was told */
    int finishing;            /* inside finish_request, which frees it: cancel only marks it */
    const char *forced_error; /* ended by failover, not by curl */
    request *next_doomed, *next_waiting;
    request *prev, *next; /* in etcd->all */
    char errbuf[CURL_ERROR_SIZE];
    char errbody[ERROR_BODY_MAX];
    size_t errbody_len;
};

/* Why a request failed, for its owner and the log (see etcdfail.c). */
void rsv_etcd_describe_failure(const request *req, CURLcode result, long status, char *out,
                               size_t size);
/* curl callbacks (CURLOPT_SOCKOPTFUNCTION for streams,
 * CURLOPT_OPENSOCKETFUNCTION with the request as data,
 * CURLOPT_CLOSESOCKETFUNCTION with the rsv_etcd as data). */
int rsv_etcd_stream_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose);
curl_socket_t rsv_etcd_open_socket(void *clientp, curlsocktype purpose,
                                   struct curl_sockaddr *address);
int rsv_etcd_close_socket(void *clientp, curl_socket_t fd);

#endif
