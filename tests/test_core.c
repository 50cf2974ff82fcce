/* tests/test_core.c - process-wide hooks: allocator, log, version. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static size_t my_mallocs, my_frees;

static void *my_malloc(size_t n)
{
    my_mallocs++;
    return malloc(n);
}

static void *my_realloc(void *p, size_t n)
{
    my_mallocs += p == NULL;
    return realloc(p, n);
}

static void my_free(void *p)
{
    my_frees += p != NULL;
    free(p);
}

static void allocator_hook_counts(void **state)
{
    (void)state;
    my_mallocs = my_frees = 0;
    rill_allocator a = {my_malloc, my_realloc, my_free}; /* a stack copy: it is copied */
    assert_int_equal(rill_set_allocator(&a), 0);
    memset(&a, 0, sizeof a);
    rill_bytes *b = rill_bytes_new("hello", 5);
    assert_non_null(b);
    assert_int_equal(my_mallocs, 1);
    rill_bytes_unref(b);
    assert_int_equal(my_frees, 1);
    char *s = rill__strdup("dup");
    assert_string_equal(s, "dup");
    s = rill__realloc(s, 100);
    assert_non_null(s);
    rill__free(s);
    assert_int_equal(my_mallocs, 2);
    assert_int_equal(my_frees, 2);

    assert_int_equal(rill_set_allocator(NULL), 0);
    b = rill_bytes_new("x", 1);
    rill_bytes_unref(b);
    assert_int_equal(my_mallocs, 2); /* the default is back */
    assert_int_equal(my_frees, 2);
}

static void allocator_missing_function(void **state)
{
    (void)state;
    rill_allocator a = {my_malloc, my_realloc, NULL};
    assert_int_equal(rill_set_allocator(&a), RILL_EINVAL);
    a = (rill_allocator){NULL, my_realloc, my_free};
    assert_int_equal(rill_set_allocator(&a), RILL_EINVAL);
    a = (rill_allocator){my_malloc, NULL, my_free};
    assert_int_equal(rill_set_allocator(&a), RILL_EINVAL);
    /* A refused allocator is not installed. */
    my_mallocs = 0;
    rill__free(rill__malloc(8));
    assert_int_equal(my_mallocs, 0);
}

static void failing_allocator_sets_errno(void **state)
{
    (void)state;
    th_alloc_install();
    th_alloc_fail_at(1);
    errno = 0;
    assert_null(rill__malloc(16));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(rill__strdup("abc"));
    assert_int_equal(errno, ENOMEM);
    th_alloc_fail_at(0);
    assert_int_equal(th_alloc_live(), 0);
    th_alloc_reset();
}

static void calloc_zeroes_and_checks_overflow(void **state)
{
    (void)state;
    th_alloc_install();
    unsigned char *p = rill__calloc(100, 3);
    assert_non_null(p);
    for (int i = 0; i < 300; i++)
        assert_int_equal(p[i], 0);
    rill__free(p);
    size_t calls = th_alloc_count();
    errno = 0;
    assert_null(rill__calloc(SIZE_MAX / 2, 3));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(th_alloc_count(), calls); /* refused before asking the allocator */
    assert_non_null(p = rill__malloc(0));      /* zero is a valid request */
    rill__free(p);
    rill__free(NULL);
    assert_int_equal(th_alloc_live(), 0);
    th_alloc_reset();
}

static int log_calls, log_level;
static char log_msg[256];
static void *log_seen_arg;

static void my_log(int level, const char *msg, void *arg)
{
    log_calls++;
    log_level = level;
    log_seen_arg = arg;
    snprintf(log_msg, sizeof log_msg, "%s", msg);
}

static void log_hook_receives(void **state)
{
    (void)state;
    int tag;
    log_calls = 0;
    rill_set_log(my_log, &tag);
    errno = EBADF;
    rill__log(RILL_LOG_WARN, "disk %s at %d%%", "full", 99);
    assert_int_equal(errno, EBADF); /* logging keeps the caller's errno */
    assert_int_equal(log_calls, 1);
    assert_int_equal(log_level, RILL_LOG_WARN);
    assert_string_equal(log_msg, "disk full at 99%");
    assert_ptr_equal(log_seen_arg, &tag);
    rill__log(RILL_LOG_DEBUG, "detail");
    assert_int_equal(log_calls, 2); /* a hook sees every level */
    assert_int_equal(log_level, RILL_LOG_DEBUG);

    char big[4000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    rill__log(RILL_LOG_ERROR, "%s", big); /* cut, never overflowing */
    assert_int_equal(log_calls, 3);

    rill_set_log(NULL, NULL);
    rill__log(RILL_LOG_INFO, "to the default sink, which drops INFO");
    assert_int_equal(log_calls, 3);
}

static void log_default_prints_warnings(void **state)
{
    (void)state;
    /* Capture stderr in a pipe for the duration of the default sink's output. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fds[1], 2);
    rill_set_log(NULL, NULL);
    rill__log(RILL_LOG_WARN, "low on %s", "fds");
    rill__log(RILL_LOG_INFO, "hidden");
    rill__log(RILL_LOG_DEBUG, "hidden");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    char out[256] = {0};
    ssize_t n = read(fds[0], out, sizeof out - 1);
    close(fds[0]);
    assert_true(n > 0);
    assert_string_equal(out, "rill: warning: low on fds\n");
}

static void version_string(void **state)
{
    (void)state;
    assert_string_equal(rill_version(), "0.1.0");
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", RILL_VERSION_MAJOR, RILL_VERSION_MINOR,
             RILL_VERSION_PATCH);
    assert_string_equal(rill_version(), want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allocator_hook_counts),
        cmocka_unit_test(allocator_missing_function),
        cmocka_unit_test(failing_allocator_sets_errno),
        cmocka_unit_test(calloc_zeroes_and_checks_overflow),
        cmocka_unit_test(log_hook_receives),
        cmocka_unit_test(log_default_prints_warnings),
        cmocka_unit_test(version_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
