/* A small program with a few hot functions, so that a trace of it has an
 * obvious answer: sieve() dominates, then fnv1a() and collatz(). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static unsigned sieve(unsigned limit)
{
    unsigned char *composite = calloc(limit + 1, 1);
    unsigned count = 0;
    if (!composite)
        return 0;
    for (unsigned i = 2; i <= limit; i++) {
        if (composite[i])
            continue;
        count++;
        for (unsigned long j = (unsigned long)i * i; j <= limit; j += i)
            composite[j] = 1;
    }
    free(composite);
    return count;
}

__attribute__((noinline)) static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

__attribute__((noinline)) static unsigned collatz(unsigned long n)
{
    unsigned steps = 0;
    while (n != 1) {
        n = (n & 1) ? 3 * n + 1 : n / 2;
        steps++;
    }
    return steps;
}

int main(int argc, char **argv)
{
    unsigned scale = argc > 1 ? (unsigned)atoi(argv[1]) : 1;
    if (scale == 0)
        scale = 1;
    unsigned primes = sieve(200000 * scale);
    char text[4096];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 26);
    uint32_t h = 0;
    for (unsigned r = 0; r < 50 * scale; r++)
        h ^= fnv1a(text, sizeof text) + r;
    unsigned longest = 0;
    for (unsigned long n = 1; n < 20000ul * scale; n++) {
        unsigned s = collatz(n);
        if (s > longest)
            longest = s;
    }
    printf("primes=%u hash=%08x longest=%u\n", primes, h, longest);
    return 0;
}
