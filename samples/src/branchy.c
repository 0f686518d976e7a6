/* Two runs that part at one known branch: `branchy FILE` reads FILE with
 * read(2), does the same work whatever it holds, then goes to path_a() if
 * its byte BRANCH_AT is 'a' and to path_b() otherwise, then does more common
 * work. Used by `qtrace diff --first`: the first divergence of two runs with
 * inputs that differ only in that byte is the branch in decide(), the read
 * whose data differ explains it (syscall_data=), and so does the load of
 * that byte in decide()'s block (mem=values).
 *
 * decide() branches through a table indexed by the comparison, so that its
 * one block loads the byte, compares it and jumps straight into path_a or
 * path_b: the first blocks that differ are those functions' own (an `if`
 * would first run a block of decide() holding the call). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define BRANCH_AT 3

static char input[64];
static volatile unsigned long sink;

/* The same amount of work in every run. */
static __attribute__((noinline)) unsigned long common_work(unsigned long n)
{
    unsigned long h = 1469598103934665603ul;
    for (unsigned long i = 0; i < n; i++)
        h = (h ^ i) * 1099511628211ul;
    return h;
}

static __attribute__((noipa)) void path_a(void)
{
    for (int i = 0; i < 300; i++)
        sink += (unsigned long)i * 3;
}

static __attribute__((noipa)) void path_b(void)
{
    for (int i = 0; i < 500; i++)
        sink ^= (unsigned long)i << 1;
}

static void (*const paths[2])(void) = { path_b, path_a };

/* Loads the input byte and branches on it: the last block both runs share. */
static __attribute__((noipa)) void decide(const volatile char *in)
{
    paths[in[BRANCH_AT] == 'a']();
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: branchy FILE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    ssize_t n = read(fd, input, sizeof input - 1);
    close(fd);
    if (n <= BRANCH_AT) {
        fprintf(stderr, "branchy: %s: need at least %d bytes\n", argv[1], BRANCH_AT + 1);
        return 1;
    }
    sink = common_work(1000);
    getppid();
    decide(input);
    sink += common_work(1000);
    return 0;
}
