/*
 * procinfo.c - see procinfo.h.  Field numbers are those of proc(5) for
 * /proc/PID/stat; the command name (field 2) may hold spaces and
 * parentheses, so parsing starts after its last ')'.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "procinfo.h"

int rsv_procinfo_parse_stat(const char *stat, long clk_tck, long page, double boot_time_s,
                            rsv_procinfo *out)
{
    const char *p = stat ? strrchr(stat, ')') : NULL;
    if (!p || clk_tck <= 0)
        return -1;
    p++;
    /* Fields 3.. after the name: state, then numbers; we want utime (14),
     * stime (15), starttime (22), vsize (23), rss (24). */
    unsigned long long f[25] = {0};
    int field = 3;
    while (*p && field <= 24) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        char *end;
        if (field == 3) {
            end = (char *)p + strcspn(p, " ");
        } else {
            f[field] = strtoull(p, &end, 10);
            if (end == p)
                return -1;
        }
        p = end;
        field++;
    }
    if (field <= 24)
        return -1;
    out->cpu_seconds = (double)(f[14] + f[15]) / (double)clk_tck;
    out->start_time_s = boot_time_s >= 0 ? boot_time_s + (double)f[22] / (double)clk_tck : -1;
    out->virtual_bytes = (double)f[23];
    out->resident_bytes = page > 0 ? (double)f[24] * (double)page : -1;
    return 0;
}

static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    char line[256];
    double btime = -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (sscanf(line, "btime %llu", &v) == 1) {
            btime = (double)v;
            break;
        }
    }
    fclose(f);
    return btime;
}

static char *read_small_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = malloc(4096);
    size_t n = buf ? fread(buf, 1, 4095, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static double count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    double n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && atoi(de->d_name) != dirfd(d))
            n++; /* not the directory's own descriptor */
    closedir(d);
    return n;
}

void rsv_procinfo_read(rsv_procinfo *out)
{
    out->cpu_seconds = out->start_time_s = out->resident_bytes = out->virtual_bytes = -1;
    char *stat = read_small_file("/proc/self/stat");
    rsv_procinfo_parse_stat(stat, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), boot_time(), out);
    free(stat);
    out->open_fds = count_open_fds();
    struct rlimit rl;
    out->max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                       ? (double)rl.rlim_cur
                       : -1;
}
