/* Loads libqthot.so (found beside this program) with dlopen, calls its
 * function, and unloads it with dlclose, twice: a trace of it has the
 * library mapped and unmapped at points of the run that tests can check
 * against its system calls, and the same addresses used twice. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    char path[4096];
    const char *slash = strrchr(argv[0], '/');
    if (slash)
        snprintf(path, sizeof path, "%.*s/libqthot.so", (int)(slash - argv[0]), argv[0]);
    else
        snprintf(path, sizeof path, "./libqthot.so");
    for (int round = 0; round < 2; round++) {
        void *lib = dlopen(path, RTLD_NOW);
        if (!lib) {
            fprintf(stderr, "dynload: %s\n", dlerror());
            return 1;
        }
        uint64_t (*mix)(uint64_t, unsigned) = (uint64_t(*)(uint64_t, unsigned))dlsym(lib, "qthot_mix");
        if (!mix)
            return 1;
        uint64_t x = mix(42, 2000);
        printf("dynload: round %d: qthot_mix at %p -> %016llx\n", round, (void *)mix,
               (unsigned long long)x);
        dlclose(lib);
    }
    (void)argc;
    return 0;
}
