/*
 * engine_threads - the embedded engine on a thread of its own, four threads
 * picking and reporting done through the public API while the test script
 * churns the service's instances in a real etcd.  Run under ASan/UBSan (the
 * sanitizer build runs it too): any race on reclaimed memory shows there.
 *
 *   engine_threads ETCD_URL SERVICE SECONDS
 * Prints "picks=N failures=N" and exits 0 when it picked at least once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "resolver.h"

static resolver_engine *engine;
static const char *service;
static atomic_int stop_picking;
static atomic_long picks, failures;

static void *engine_thread(void *arg)
{
    resolver_engine_run(engine);
    return NULL;
}

static void *picker_thread(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    char key[32];
    while (!atomic_load(&stop_picking)) {
        resolver_pick_result r;
        snprintf(key, sizeof(key), "k%u", rand_r(&seed) % 100);
        if (resolver_engine_pick(engine, service, key, &r) == 0) {
            atomic_fetch_add(&picks, 1);
            resolver_engine_done(engine, r.ticket, rand_r(&seed) % 50 == 0, 1);
        } else {
            atomic_fetch_add(&failures, 1);
            usleep(1000);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: engine_threads ETCD_URL SERVICE SECONDS\n");
        return 2;
    }
    service = argv[2];
    resolver_config *cfg;
    if (resolver_config_new_default(&cfg) != 0 || resolver_config_set_endpoints(cfg, argv[1]) != 0)
        return 2;
    if (resolver_engine_new(&engine, cfg) != 0)
        return 2;
    pthread_t loop, pickers[4];
    pthread_create(&loop, NULL, engine_thread, NULL);
    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&pickers[i], NULL, picker_thread, (void *)(i + 1));
    sleep((unsigned)atoi(argv[3]));
    atomic_store(&stop_picking, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(pickers[i], NULL);
    resolver_engine_stop(engine);
    pthread_join(loop, NULL);
    resolver_engine_del(engine);
    printf("picks=%ld failures=%ld\n", atomic_load(&picks), atomic_load(&failures));
    return atomic_load(&picks) > 0 ? 0 : 1;
}
