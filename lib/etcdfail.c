/*
 * etcdfail.c - the parts of etcd.c that decide nothing about the loop:
 * which failures leave a member and which member is next (both pure), the
 * text a failed request is described by, and the count of open sockets
 * kept through curl's open/close socket callbacks.  Nothing here calls
 * into etcd.c.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <curl/curl.h>
#include "etcdfail.h"
#include "etcdproto.h"

int rsv_etcd_member_failure(int result, long status)
{
    switch ((CURLcode)result) {
    case CURLE_OK:
        return status >= 500;
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

/* The timeout that fired, by the name an operator configures it with:
 * every request connects within etcd.dial_timeout_ms; probes, checks and
 * auth must also answer within it; other unary calls within
 * UNARY_TIMEOUT_MS.  Streams have no total timeout. */
static void timeout_name(const request *req, char *out, size_t size)
{
    const rsv_etcd *etcd = req->etcd;
    curl_off_t connected = 0, started = 0;
    curl_easy_getinfo(req->easy, CURLINFO_CONNECT_TIME_T, &connected);
    /* A request on a reused (HTTP/2: shared) connection has no connect
     * time; it was sent if it got past pretransfer. */
    curl_easy_getinfo(req->easy, CURLINFO_PRETRANSFER_TIME_T, &started);
    if ((connected == 0 && started == 0) || (req->flags & RSV_ETCD_STREAM))
        snprintf(out, size, "no connection within dial_timeout_ms=%ld", etcd->dial_timeout_ms);
    else if (req->arg == etcd || (req->flags & RSV_ETCD_CHECK))
        snprintf(out, size, "no answer within dial_timeout_ms=%ld", etcd->dial_timeout_ms);
    else
        snprintf(out, size, "no answer within %ld ms (the limit of a unary request)",
                 UNARY_TIMEOUT_MS);
}

/* Why a request failed, for its owner and the log: its URL, then the
 * timeout that fired, curl's own words (its error buffer says more than
 * curl_easy_strerror: address, port, errno), or the HTTP status with
 * etcd's message from the body. */
void rsv_etcd_describe_failure(const request *req, CURLcode result, long status, char *out,
                               size_t size)
{
    const char *url = req->etcd->endpoints[req->endpoint];
    const char *curl = req->errbuf[0] ? req->errbuf : curl_easy_strerror(result);
    if (result == CURLE_OPERATION_TIMEDOUT) {
        char t[128];
        timeout_name(req, t, sizeof(t));
        snprintf(out, size, "%s%s: %s (%s)", url, req->path, t, curl);
    } else if (result != CURLE_OK) {
        snprintf(out, size, "%s%s: %s", url, req->path, curl);
    } else {
        char msg[ERROR_BODY_MAX + 64];
        rsv_etcd_error_text(req->errbody, req->errbody_len, msg, sizeof(msg));
        snprintf(out, size, "%s%s: HTTP %ld: %s", url, req->path, status, msg);
    }
}

size_t rsv_etcd_next_endpoint(size_t current, size_t n, size_t failed)
{
    if (failed != current || n < 2)
        return current;
    return (current + 1) % n;
}

/* Streams: a dead peer (no FIN, no RST) is noticed by TCP keepalive after
 * KEEPIDLE + KEEPCNT x KEEPINTVL = 10 + 3 x 5 s, not the kernel's default
 * nine probes; a frozen member is left sooner by the health probe. */
int rsv_etcd_stream_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    int count = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    return CURL_SOCKOPT_OK;
}

static int add_conn(rsv_etcd *etcd, curl_socket_t fd, size_t endpoint)
{
    if (etcd->n_conns == etcd->conns_cap) {
        size_t cap = etcd->conns_cap ? etcd->conns_cap * 2 : 8;
        void *c = realloc(etcd->conns, cap * sizeof(*etcd->conns));
        if (!c)
            return -1;
        etcd->conns = c;
        etcd->conns_cap = cap;
    }
    etcd->conns[etcd->n_conns].fd = fd;
    etcd->conns[etcd->n_conns].endpoint = endpoint;
    etcd->n_conns++;
    return 0;
}

curl_socket_t rsv_etcd_open_socket(void *clientp, curlsocktype purpose,
                                   struct curl_sockaddr *address)
{
    request *req = clientp;
    curl_socket_t fd = socket(address->family, address->socktype, address->protocol);
    if (fd == CURL_SOCKET_BAD)
        return fd;
    if (add_conn(req->etcd, fd, req->endpoint) != 0) {
        close(fd);
        return CURL_SOCKET_BAD;
    }
    return fd;
}

int rsv_etcd_close_socket(void *clientp, curl_socket_t fd)
{
    rsv_etcd *etcd = clientp;
    for (size_t i = 0; i < etcd->n_conns; i++) {
        if (etcd->conns[i].fd == fd) {
            etcd->conns[i] = etcd->conns[--etcd->n_conns];
            break;
        }
    }
    return close(fd);
}
