/* A shared library with one hot exported function, qthot_mix(), which spends
 * its time in a static helper, qthot_round(). The helper is in .symtab only
 * (not in .dynsym), so naming it needs the file's full symbol table or its
 * separate debug file. QEMU knows neither: it only reads the main binary's
 * symbols. */
#include <stdint.h>

__attribute__((noinline, noclone)) static uint64_t qthot_round(uint64_t x, uint64_t k)
{
    for (int i = 0; i < 16; i++) {
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ull + k;
        x ^= x >> 32;
    }
    return x;
}

uint64_t qthot_mix(uint64_t seed, unsigned rounds)
{
    uint64_t x = seed;
    for (unsigned r = 0; r < rounds; r++) {
        x = qthot_round(x, r);
        if ((x & 0xff) == 0)
            x += r;
    }
    return x;
}
