/* ft_test.h - shared fixtures for the cmocka tests. */
#ifndef FT_TEST_H
#define FT_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ftrt/runtime.h"

/* Group fixtures: the runtime with its defaults and the FTRT_* environment
 * (cmocka_run_group_tests(tests, ft_test_runtime_up, ft_test_runtime_down)). */
static inline int ft_test_runtime_up(void **state)
{
    (void)state;
    return ft_init(NULL);
}

static inline int ft_test_runtime_down(void **state)
{
    (void)state;
    ft_fini();
    return 0;
}

/* Runs fn(arg) in a forked child whose stderr is captured. Returns true when
 * the child died of SIGABRT and its stderr contains `expect`; prints what it
 * saw otherwise. For testing misuse paths that abort by contract. */
static inline bool ft_test_aborts_with(void (*fn)(void *arg), void *arg, const char *expect)
{
    int fds[2];
    char buf[4096];
    size_t used = 0;
    ssize_t n;
    int status = 0;
    pid_t pid;

    if (pipe(fds) != 0)
        return false;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        fn(arg);
        _exit(0); /* the misuse was not caught */
    }
    close(fds[1]);
    while (used < sizeof buf - 1 && (n = read(fds[0], buf + used, sizeof buf - 1 - used)) > 0)
        used += (size_t)n;
    buf[used] = '\0';
    close(fds[0]);
    waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT || strstr(buf, expect) == NULL) {
        fprintf(stderr, "child status %d, expected SIGABRT and \"%s\"; stderr was:\n%s\n", status,
                expect, buf);
        return false;
    }
    return true;
}

#endif /* FT_TEST_H */
