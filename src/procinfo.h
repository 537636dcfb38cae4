/*
 * procinfo.h - the process figures Prometheus' client libraries export
 * (process_resident_memory_bytes and friends), read from /proc.  Linux
 * only; any thread.
 */
#ifndef RSV_PROCINFO_H
#define RSV_PROCINFO_H

#include <stdint.h>

/* A figure that could not be read is negative. */
typedef struct {
    double cpu_seconds;    /* user + system */
    double start_time_s;   /* since the Unix epoch */
    double resident_bytes; /* RSS */
    double virtual_bytes;  /* vsize */
    double open_fds;       /* the descriptors open now */
    double max_fds;        /* RLIMIT_NOFILE, soft */
} rsv_procinfo;

/* Fills *out for the calling process (never fails: unknown is negative). */
void rsv_procinfo_read(rsv_procinfo *out);

/* The /proc/PID/stat part, for tests: `stat` is the file's text,
 * `clk_tck` sysconf(_SC_CLK_TCK), `page` the page size, `boot_time_s` the
 * btime line of /proc/stat.  0, or -1 when `stat` cannot be parsed (then
 * the fields it would give stay as they were). */
int rsv_procinfo_parse_stat(const char *stat, long clk_tck, long page, double boot_time_s,
                            rsv_procinfo *out);

#endif
