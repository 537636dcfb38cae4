/* cache.c - see cache.h. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cache.h"
#include "log.h"
#include "resolver.h"

char *rsv_cache_encode(json_t *services, json_t *registrations)
{
    json_t *doc = json_pack("{s:i, s:O}", "version", 1, "services", services);
    if (doc && json_array_size(registrations) &&
        json_object_set(doc, "registrations", registrations) != 0) {
        json_decref(doc);
        return NULL;
    }
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    return text;
}

int rsv_cache_write(const char *path, json_t *services, char *err, size_t errlen)
{
    char *text = rsv_cache_encode(services, NULL);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return RESOLVER_ERR_NOMEM;
    }
    int rc = rsv_cache_write_text(path, text, err, errlen);
    free(text);
    return rc;
}

int rsv_cache_write_text(const char *path, const char *text, char *err, size_t errlen)
{
    size_t len = strlen(text), tmp_len = strlen(path) + 16;
    char *tmp = malloc(tmp_len);
    int rc = RESOLVER_ERR_IO, fd = -1;
    if (!tmp) {
        snprintf(err, errlen, "out of memory");
        return RESOLVER_ERR_NOMEM;
    }
    snprintf(tmp, tmp_len, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        goto fail;
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        off += (size_t)n;
    }
    /* The rename must not reach the disk before the data does. */
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    rc = 0;
    goto out;
fail:
    snprintf(err, errlen, "cache_file %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out:
    free(tmp);
    return rc;
}

/* ---- the writer thread ---- */

struct rsv_cache_writer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    char *path, *text; /* waiting to be written; NULL: nothing */
    int stopping;
    unsigned long long writes;
};

static void *writer_main(void *arg)
{
    static rsv_log_limit fail_log; /* a full disk fails every write */
    rsv_cache_writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->text && !w->stopping)
            pthread_cond_wait(&w->wake, &w->lock);
        if (!w->text)
            break; /* stopping, and everything submitted is written */
        char *path = w->path, *text = w->text;
        w->path = w->text = NULL;
        pthread_mutex_unlock(&w->lock);
        char err[512];
        int rc = rsv_cache_write_text(path, text, err, sizeof(err));
        if (rc != 0)
            LOG_WARN_LIMITED(&fail_log, "%s", err);
        free(path);
        free(text);
        pthread_mutex_lock(&w->lock);
        if (rc == 0)
            w->writes++;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

rsv_cache_writer *rsv_cache_writer_new(void)
{
    rsv_cache_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    /* The thread must not take the signals the host expects on its own
     * threads (the daemon's SIGTERM is read through a signalfd). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    return w;
}

int rsv_cache_writer_submit(rsv_cache_writer *w, const char *path, char *text)
{
    char *p = strdup(path);
    if (!p) {
        free(text);
        return RESOLVER_ERR_NOMEM;
    }
    pthread_mutex_lock(&w->lock);
    free(w->path);
    free(w->text);
    w->path = p;
    w->text = text;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

unsigned long long rsv_cache_writer_writes(rsv_cache_writer *w)
{
    pthread_mutex_lock(&w->lock);
    unsigned long long n = w->writes;
    pthread_mutex_unlock(&w->lock);
    return n;
}

void rsv_cache_writer_del(rsv_cache_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    free(w->path);
    free(w->text);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

static int entry_endpoint(json_t *kv, rsv_endpoint *ep, const char **key)
{
    const char *address = NULL, *zone = "";
    json_int_t weight = 1;
    int tls = 0;
    memset(ep, 0, sizeof(*ep));
    if (json_unpack(kv, "{s:s, s:s, s?I, s?s, s?b}", "key", key, "address", &address, "weight",
                    &weight, "zone", &zone, "tls", &tls) != 0)
        return -1;
    char why[128];
    if (rsv_address_parse(address, strlen(address), ep, why, sizeof(why)) != 0)
        return -1;
    if (weight < 1 || weight > 1000000 || strlen(zone) >= sizeof(ep->zone))
        return -1;
    ep->weight = (uint32_t)weight;
    snprintf(ep->zone, sizeof(ep->zone), "%s", zone);
    ep->tls = tls;
    ep->is_delete = 0;
    /* As the registry gave it (registry.c kept it compact and sorted). */
    json_t *md = json_object_get(kv, "metadata");
    if (json_is_object(md) && json_object_size(md) > 0) {
        char buf[RSV_METADATA_MAX + 1];
        size_t len = json_dumpb(md, buf, sizeof(buf), JSON_COMPACT | JSON_SORT_KEYS);
        if (len > 0 && len <= RSV_METADATA_MAX)
            atomic_store(&ep->metadata, rsv_metadata_new(buf, len)); /* NULL: none */
    }
    return 0;
}

int rsv_cache_read(const char *path, rsv_cache_entry_cb cb, void *arg, size_t *skipped, char *err,
                   size_t errlen)
{
    *skipped = 0;
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) {
        if (access(path, F_OK) != 0 && errno == ENOENT)
            return 0;
        snprintf(err, errlen, "cache_file %s: %s (line %d)", path, jerr.text, jerr.line);
        return RESOLVER_ERR_DECODE;
    }
    json_t *services = json_object_get(doc, "services");
    if (json_integer_value(json_object_get(doc, "version")) != 1 || !json_is_object(services)) {
        snprintf(err, errlen, "cache_file %s: not a resolverd cache (version 1)", path);
        json_decref(doc);
        return RESOLVER_ERR_DECODE;
    }
    const char *name;
    json_t *svc;
    json_object_foreach(services, name, svc)
    {
        const char *prefix = json_string_value(json_object_get(svc, "prefix"));
        json_t *kvs = json_object_get(svc, "kvs");
        if (!prefix || !json_is_array(kvs)) {
            (*skipped)++;
            continue;
        }
        size_t i;
        json_t *kv;
        json_array_foreach(kvs, i, kv)
        {
            rsv_endpoint ep;
            const char *key;
            if (entry_endpoint(kv, &ep, &key) != 0) {
                (*skipped)++;
                continue;
            }
            cb(arg, name, prefix, key, &ep);
            rsv_endpoint_clear(&ep);
        }
    }
    json_decref(doc);
    return 0;
}

/* ---- run-time registrations ---- */

json_t *rsv_cache_registration_json(const rsv_registration_config *r)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I}", "service", r->service, "address", r->address,
                          "format", rsv_format_name(r->format), "ttl_ms", (json_int_t)r->ttl_ms,
                          "weight", (json_int_t)r->weight);
    int rc = o ? 0 : -1;
    if (rc == 0 && r->zone && *r->zone)
        rc = json_object_set_new(o, "zone", json_string(r->zone));
    if (rc == 0 && r->metadata && *r->metadata) {
        json_t *meta = json_loads(r->metadata, 0, NULL);
        rc = meta ? json_object_set_new(o, "metadata", meta) : -1;
    }
    if (rc == 0 && r->key && *r->key)
        rc = json_object_set_new(o, "key", json_string(r->key));
    if (rc == 0 && r->health_check)
        rc = json_object_set_new(o, "health_check", json_string(r->health_check));
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* One entry back into a registration, through the checks a registration
 * from the CLI gets (a hand-edited file is not trusted more than that). */
static int entry_registration(json_t *v, rsv_registration_config *r)
{
    const char *service = NULL, *address = NULL, *format = NULL, *zone = NULL, *key = NULL,
               *health = NULL;
    json_int_t ttl = 0, weight = 0;
    json_t *meta = NULL;
    char why[256];
    if (json_unpack(v, "{s:s, s:s, s?s, s?I, s?I, s?s, s?o, s?s, s?s}", "service", &service,
                    "address", &address, "format", &format, "ttl_ms", &ttl, "weight", &weight,
                    "zone", &zone, "metadata", &meta, "key", &key, "health_check", &health) != 0)
        return -1;
    if (ttl < 0 || weight < 0 || weight > UINT32_MAX || (meta && !json_is_object(meta)))
        return -1;
    char *metadata = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (meta && !metadata)
        return -1;
    int rc = rsv_registration_build(r, service, address, format, (uint64_t)ttl, (uint32_t)weight,
                                    zone, metadata, key && *key ? key : NULL, why, sizeof(why));
    free(metadata);
    if (rc != 0)
        return -1;
    if (health && !(r->health_check = strdup(health))) {
        rsv_registration_clear(r);
        return -1;
    }
    return 0;
}

int rsv_cache_read_registrations(const char *path, rsv_cache_registration_cb cb, void *arg,
                                 size_t *skipped, char *err, size_t errlen)
{
    *skipped = 0;
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) {
        if (access(path, F_OK) != 0 && errno == ENOENT)
            return 0;
        snprintf(err, errlen, "cache_file %s: %s (line %d)", path, jerr.text, jerr.line);
        return RESOLVER_ERR_DECODE;
    }
    if (json_integer_value(json_object_get(doc, "version")) != 1) {
        snprintf(err, errlen, "cache_file %s: not a resolverd cache (version 1)", path);
        json_decref(doc);
        return RESOLVER_ERR_DECODE;
    }
    json_t *regs = json_object_get(doc, "registrations"), *v;
    size_t i;
    if (regs && !json_is_array(regs))
        (*skipped)++;
    json_array_foreach(regs, i, v)
    {
        rsv_registration_config r;
        rsv_registration_default(&r);
        if (entry_registration(v, &r) != 0) {
            (*skipped)++;
            continue;
        }
        cb(arg, &r);
        rsv_registration_clear(&r);
    }
    json_decref(doc);
    return 0;
}
