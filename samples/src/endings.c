/* The ways a program ends, for testing that a trace survives each of them.
 *
 *   endings [-w UNITS] MODE [ARGS...]
 *
 * Every mode first does UNITS (default 1) units of the same work, a loop of
 * many small blocks, so that there is a known amount of trace before the
 * end. Output is deterministic: no times, addresses, process ids or random
 * numbers, so that two runs of the same mode execute the same blocks.
 *
 *   exit N           exit with status N
 *   segv             store through a null pointer
 *   abort            abort()
 *   exit-worker N    a second thread calls exit_group(N) while the main
 *                    thread is blocked joining it
 *   raise SIG        kill(getpid(), SIG): die of SIG (a number or a name,
 *                    INT or SIGINT)
 *   wait [pause]     print "ready", then work forever (or block in pause())
 *                    until a signal from outside ends the run
 *   pipe             write numbered lines to stdout until the write fails
 *                    (SIGPIPE when the reader has gone)
 *   fork [N]         fork: the child works and exits with N (default 7),
 *                    the parent waits for it, works again and exits 0
 *   fork-threads [N] the same, forked from a second thread while a third
 *                    one is working
 *   exec PATH ARGS   execve PATH with ARGS (ARGS[0] is PATH itself); when
 *                    that fails, print the errno name, work again, exit 0
 *   exec-fail        exec of a path that does not exist
 *   slow N MS        N rounds of one unit of work, each followed by a line
 *                    "round K" and a sleep of MS milliseconds, then exit 0
 *   write BYTES PATH write BYTES bytes to the file PATH, then exit 0
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static unsigned units = 1;

__attribute__((noinline)) static unsigned collatz(unsigned long n)
{
    unsigned steps = 0;
    while (n != 1) {
        n = (n & 1) ? 3 * n + 1 : n / 2;
        steps++;
    }
    return steps;
}

/* One unit is a few hundred thousand blocks; returns a checksum to print,
 * so that the compiler cannot drop the loop. */
__attribute__((noinline)) static unsigned work(unsigned n)
{
    unsigned sum = 0;
    for (unsigned u = 0; u < n; u++)
        for (unsigned long k = 1; k < 3000; k++)
            sum += collatz(k + u);
    return sum;
}

static void say(const char *what, unsigned sum)
{
    printf("%s %u\n", what, sum);
    fflush(stdout);
}

static int usage(void)
{
    fputs("usage: endings [-w UNITS] exit N | segv | abort | exit-worker N | raise SIG |\n"
          "       wait [pause] | pipe | fork [N] | fork-threads [N] | exec PATH ARGS... |\n"
          "       exec-fail | slow N MS | write BYTES PATH\n",
          stderr);
    return 2;
}

static int signal_number(const char *s)
{
    static const struct {
        const char *name;
        int num;
    } names[] = {
        { "HUP", SIGHUP },   { "INT", SIGINT },   { "QUIT", SIGQUIT }, { "ABRT", SIGABRT },
        { "KILL", SIGKILL }, { "SEGV", SIGSEGV }, { "PIPE", SIGPIPE }, { "ALRM", SIGALRM },
        { "TERM", SIGTERM }, { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 },
    };
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].num;
    return atoi(s);
}

static void *exit_worker(void *arg)
{
    int code = *(int *)arg;
    say("worker", work(units));
    syscall(SYS_exit_group, code);
    return NULL;
}

/* The child of a fork: its own work, then exit. */
static void child(int code)
{
    say("child", work(units + 1));
    exit(code);
}

static int wait_child(pid_t pid)
{
    int status;
    if (pid < 0) {
        printf("fork: %s\n", strerrorname_np(errno));
        return 1;
    }
    if (waitpid(pid, &status, 0) != pid) {
        printf("waitpid: %s\n", strerrorname_np(errno));
        return 1;
    }
    if (WIFEXITED(status))
        printf("child exited %d\n", WEXITSTATUS(status));
    else
        printf("child killed by signal %d\n", WTERMSIG(status));
    fflush(stdout);
    return 0;
}

static atomic_int stop_spinning;

static void *spinner(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_spinning))
        collatz(27);
    return NULL;
}

static void *forker(void *arg)
{
    int code = *(int *)arg;
    say("forker", work(units));
    pid_t pid = fork();
    if (pid == 0)
        child(code);
    int failed = wait_child(pid);
    atomic_store(&stop_spinning, 1);
    return (void *)(intptr_t)failed;
}

static int do_exec(char **argv)
{
    say("before exec", work(units));
    execve(argv[0], argv, environ);
    printf("execve: %s\n", strerrorname_np(errno));
    say("after failed exec", work(units));
    return 0;
}

static int do_write(unsigned long long bytes, const char *path)
{
    static char chunk[65536];
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (char)('a' + i % 26);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        printf("open: %s\n", strerrorname_np(errno));
        return 1;
    }
    for (unsigned long long left = bytes; left > 0;) {
        size_t n = left < sizeof chunk ? (size_t)left : sizeof chunk;
        ssize_t w = write(fd, chunk, n);
        if (w < 0) {
            printf("write: %s\n", strerrorname_np(errno));
            return 1;
        }
        left -= (unsigned long long)w;
    }
    if (close(fd) != 0) {
        printf("close: %s\n", strerrorname_np(errno));
        return 1;
    }
    printf("wrote %llu\n", bytes);
    return 0;
}

int main(int argc, char **argv)
{
    int a = 1;
    if (argc > 2 && strcmp(argv[1], "-w") == 0) {
        units = (unsigned)atoi(argv[2]);
        a = 3;
    }
    if (a >= argc)
        return usage();
    const char *mode = argv[a];
    char **rest = argv + a + 1;
    int nrest = argc - a - 1;

    if (strcmp(mode, "exit") == 0 && nrest == 1) {
        say("work", work(units));
        exit(atoi(rest[0]));
    } else if (strcmp(mode, "segv") == 0) {
        say("work", work(units));
        *(volatile int *)NULL = 1;
        return 0;
    } else if (strcmp(mode, "abort") == 0) {
        say("work", work(units));
        abort();
    } else if (strcmp(mode, "exit-worker") == 0 && nrest == 1) {
        int code = atoi(rest[0]);
        pthread_t t;
        say("main", work(units));
        pthread_create(&t, NULL, exit_worker, &code);
        pthread_join(t, NULL);
        puts("not reached: the worker exits the process");
        return 1;
    } else if (strcmp(mode, "raise") == 0 && nrest == 1) {
        say("work", work(units));
        kill(getpid(), signal_number(rest[0]));
        puts("not reached: the signal kills the process");
        return 1;
    } else if (strcmp(mode, "wait") == 0 && nrest <= 1) {
        int block = nrest == 1 && strcmp(rest[0], "pause") == 0;
        say("work", work(units));
        puts("ready");
        fflush(stdout);
        for (;;) {
            if (block)
                pause();
            else
                work(1);
        }
    } else if (strcmp(mode, "pipe") == 0 && nrest == 0) {
        say("work", work(units));
        for (unsigned k = 0;; k++) {
            char line[32];
            int n = snprintf(line, sizeof line, "line %u\n", k);
            if (write(STDOUT_FILENO, line, (size_t)n) < 0) {
                fprintf(stderr, "write: %s\n", strerrorname_np(errno));
                return 1;
            }
        }
    } else if (strcmp(mode, "fork") == 0 && nrest <= 1) {
        int code = nrest == 1 ? atoi(rest[0]) : 7;
        say("parent", work(units));
        pid_t pid = fork();
        if (pid == 0)
            child(code);
        int failed = wait_child(pid);
        say("parent again", work(units));
        return failed;
    } else if (strcmp(mode, "fork-threads") == 0 && nrest <= 1) {
        int code = nrest == 1 ? atoi(rest[0]) : 7;
        pthread_t spin, fork_thread;
        void *failed;
        say("main", work(units));
        pthread_create(&spin, NULL, spinner, NULL);
        pthread_create(&fork_thread, NULL, forker, &code);
        pthread_join(fork_thread, &failed);
        pthread_join(spin, NULL);
        say("main again", work(units));
        return failed != NULL;
    } else if (strcmp(mode, "exec") == 0 && nrest >= 1) {
        return do_exec(rest);
    } else if (strcmp(mode, "exec-fail") == 0 && nrest == 0) {
        char *missing[] = { "/nonexistent/endings-exec-target", NULL };
        return do_exec(missing);
    } else if (strcmp(mode, "slow") == 0 && nrest == 2) {
        unsigned rounds = (unsigned)atoi(rest[0]);
        long ms = atol(rest[1]);
        struct timespec pause_for = { ms / 1000, (ms % 1000) * 1000000L };
        for (unsigned k = 0; k < rounds; k++) {
            work(units);
            printf("round %u\n", k);
            fflush(stdout);
            nanosleep(&pause_for, NULL);
        }
        return 0;
    } else if (strcmp(mode, "write") == 0 && nrest == 2) {
        say("work", work(units));
        return do_write(strtoull(rest[0], NULL, 10), rest[1]);
    }
    return usage();
}
