/* Several guest threads, started in waves so that QEMU reuses vCPU indices:
 * each thread sums a different range, and the program checks the total. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WAVES 3
#define PER_WAVE 3

struct job {
    uint64_t from, to, sum;
    long tid;
};

static void *work(void *arg)
{
    struct job *j = arg;
    j->tid = syscall(SYS_gettid);
    for (uint64_t i = j->from; i < j->to; i++)
        j->sum += i * i % 7;
    return NULL;
}

int main(void)
{
    uint64_t total = 0, expect = 0;
    printf("tid=%ld\n", (long)syscall(SYS_gettid));
    for (int w = 0; w < WAVES; w++) {
        pthread_t t[PER_WAVE];
        struct job jobs[PER_WAVE];
        for (int k = 0; k < PER_WAVE; k++) {
            uint64_t n = (uint64_t)(w * PER_WAVE + k + 1) * 20000;
            jobs[k] = (struct job){ n, n + 20000 + 1000 * k, 0 };
            pthread_create(&t[k], NULL, work, &jobs[k]);
        }
        for (int k = 0; k < PER_WAVE; k++) {
            pthread_join(t[k], NULL);
            printf("tid=%ld\n", jobs[k].tid);
            total += jobs[k].sum;
            for (uint64_t i = jobs[k].from; i < jobs[k].to; i++)
                expect += i * i % 7;
        }
    }
    printf("total=%llu %s\n", (unsigned long long)total, total == expect ? "ok" : "WRONG");
    return total == expect ? 0 : 1;
}
