/* A dynamically linked program whose work happens in a shared library of
 * our own (libqthot.so, found beside it through its RUNPATH $ORIGIN), and a
 * little in libc: a trace of it has blocks in four modules (the program,
 * the loader, libc and libqthot.so). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

uint64_t qthot_mix(uint64_t seed, unsigned rounds);

int main(int argc, char **argv)
{
    unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 20000;
    uint64_t x = qthot_mix(42, rounds);
    /* Where the loader put the library's function: tests check the trace's
     * modules against it. */
    printf("dynhot: %u rounds -> %016llx; qthot_mix at %p\n", rounds, (unsigned long long)x,
           (void *)qthot_mix);
    return 0;
}
