/* bench/cpu_ns.h - the process's CPU time so far (user + system), in nanoseconds: the pump
 * receivers print it at the end, for the paired pump's CPU per byte. */
#ifndef BENCH_CPU_NS_H
#define BENCH_CPU_NS_H

#include <sys/resource.h>

static inline unsigned long long bench_cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0;
    return (unsigned long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
           (unsigned long long)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

#endif
