/* Functions called several times, for start/stop triggers: step() once per
 * round with a different amount of work, ping() and pong() recursively into
 * each other (so that inner calls of ping() return to the same address as
 * outer ones), and a write() at the end of each round. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) static unsigned step(unsigned x, unsigned rounds)
{
    for (unsigned i = 0; i < rounds; i++)
        x = x * 1103515245u + 12345u;
    return x;
}

__attribute__((noinline)) static unsigned ping(unsigned n);

__attribute__((noinline)) static unsigned pong(unsigned n)
{
    return n == 0 ? 1 : ping(n - 1) * 3 + 1;
}

__attribute__((noinline)) static unsigned ping(unsigned n)
{
    return pong(n) + n;
}

int main(int argc, char **argv)
{
    unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 6;
    unsigned acc = 0;
    char line[64];
    for (unsigned r = 0; r < rounds; r++) {
        acc ^= step(acc + r, 100 * (r + 1));
        acc += ping(r % 4 + 2);
        int n = snprintf(line, sizeof line, "round %u %08x\n", r, acc);
        if (write(1, line, (size_t)n) != n)
            return 1;
    }
    return 0;
}
