/* Stores, then loads back, a known pattern at every access width (1, 2, 4, 8
 * and 16 bytes) in a buffer whose address it prints, so that a recording's
 * memory values can be checked against the pattern. */
#include <stdint.h>
#include <stdio.h>

typedef uint64_t v2u64 __attribute__((vector_size(16)));

static _Alignas(16) unsigned char buf[64];
static volatile int counter = 10;

int main(void)
{
    volatile uint8_t *p8 = (volatile uint8_t *)&buf[0];
    volatile uint16_t *p16 = (volatile uint16_t *)&buf[2];
    volatile uint32_t *p32 = (volatile uint32_t *)&buf[4];
    volatile uint64_t *p64 = (volatile uint64_t *)&buf[8];
    volatile v2u64 *p128 = (volatile v2u64 *)&buf[16];

    *p8 = 0x11;
    *p16 = 0x2222;
    *p32 = 0x33333333u;
    *p64 = 0x4444444444444444ull;
    *p128 = (v2u64){ 0x5555555555555555ull, 0x6666666666666666ull };

    uint64_t sum = *p8 + *p16 + *p32 + *p64;
    v2u64 v = *p128;
    /* An atomic read-modify-write, whose values QEMU may report wrongly. */
    int before = __atomic_fetch_add(&counter, 5, __ATOMIC_SEQ_CST);
    printf("buf=%p sum=%llx v=%llx:%llx counter=%p %d->%d\n", (void *)buf,
           (unsigned long long)sum, (unsigned long long)v[1], (unsigned long long)v[0],
           (void *)&counter, before, counter);
    return 0;
}
