/* Memory with a known history, in three phases, for `qtrace mem`:
 *   1. a global counter is written N times in a loop (counter = 1 .. N),
 *      and nothing else is touched;
 *   2. a heap buffer of N bytes is filled (byte i = i & 0xff), and the
 *      counter is not touched;
 *   3. the counter is read back once.
 * So the counter's last write before phase 2 stored N, and a recording's
 * row groups of phase 1 hold only the counter's address, those of phase 2
 * only the buffer's: each can be skipped when looking for the other.
 * N is the first argument (default 1000). Prints the counter's and the
 * buffer's addresses. */
#include <stdio.h>
#include <stdlib.h>

volatile unsigned long counter;

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    volatile unsigned char *buf = malloc(n ? n : 1);
    if (!buf)
        return 1;
    for (unsigned long i = 0; i < n; i++)
        counter = i + 1;
    for (unsigned long i = 0; i < n; i++)
        buf[i] = (unsigned char)i;
    unsigned long seen = counter;
    printf("counter=%p buf=%p n=%lu seen=%lu\n", (void *)&counter, (void *)buf, n, seen);
    return seen == n ? 0 : 1;
}
