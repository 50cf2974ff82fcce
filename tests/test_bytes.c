/* tests/test_bytes.c - shared byte strings: copy, wrap, static, atomic reference counts. */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_int frees;
static void *freed_ptr;

static void count_free(void *p)
{
    atomic_fetch_add(&frees, 1);
    freed_ptr = p;
    free(p);
}

static void reset_frees(void)
{
    atomic_store(&frees, 0);
    freed_ptr = NULL;
}

static void new_copies(void **state)
{
    (void)state;
    char src[100];
    th_fill(src, sizeof src, 1);
    rill_bytes *b = rill_bytes_new(src, sizeof src);
    assert_non_null(b);
    assert_ptr_not_equal(rill_bytes_data(b), src);
    memset(src, 0, sizeof src); /* the copy is independent of the source */
    char want[100];
    th_fill(want, sizeof want, 1);
    assert_int_equal(rill_bytes_len(b), 100);
    assert_memory_equal(rill_bytes_data(b), want, 100);
    rill_bytes_unref(b);
}

static void new_one_allocation(void **state)
{
    (void)state;
    th_alloc_install();
    rill_bytes *b = rill_bytes_new("abc", 3);
    assert_int_equal(th_alloc_count(), 1); /* header and data together */
    assert_int_equal(th_alloc_live(), 1);
    rill_bytes_unref(b);
    assert_int_equal(th_alloc_live(), 0);
    th_alloc_reset();
}

static void empty_strings(void **state)
{
    (void)state;
    rill_bytes *b = rill_bytes_new(NULL, 0);
    assert_non_null(b);
    assert_int_equal(rill_bytes_len(b), 0);
    rill_bytes_unref(b);
    b = rill_bytes_static(NULL, 0);
    assert_non_null(b);
    assert_int_equal(rill_bytes_len(b), 0);
    rill_bytes_unref(b);
    errno = 0;
    assert_null(rill_bytes_new(NULL, 5));
    assert_int_equal(errno, EINVAL);
    rill_bytes_ref(NULL);
    rill_bytes_unref(NULL);
}

static void wrap_frees_once_at_last_unref(void **state)
{
    (void)state;
    reset_frees();
    char *p = malloc(10);
    memcpy(p, "0123456789", 10);
    rill_bytes *b = rill_bytes_wrap(p, 10, count_free);
    assert_non_null(b);
    assert_ptr_equal(rill_bytes_data(b), p); /* no copy */
    assert_int_equal(rill_bytes_len(b), 10);
    assert_ptr_equal(rill_bytes_ref(b), b);
    rill_bytes_ref(b);
    rill_bytes_unref(b);
    rill_bytes_unref(b);
    assert_int_equal(atomic_load(&frees), 0);
    rill_bytes_unref(b);
    assert_int_equal(atomic_load(&frees), 1);
    assert_ptr_equal(freed_ptr, p);
}

static void wrap_without_free_fn(void **state)
{
    (void)state;
    char local[4] = "abc";
    rill_bytes *b = rill_bytes_wrap(local, 3, NULL);
    assert_non_null(b);
    assert_ptr_equal(rill_bytes_data(b), local);
    rill_bytes_unref(b);
}

static void static_is_not_freed(void **state)
{
    (void)state;
    static const char lit[] = "literal";
    th_alloc_install();
    rill_bytes *b = rill_bytes_static(lit, 7);
    assert_non_null(b);
    assert_ptr_equal(rill_bytes_data(b), lit);
    assert_int_equal(rill_bytes_len(b), 7);
    rill_bytes_ref(b);
    rill_bytes_unref(b);
    rill_bytes_unref(b);
    assert_int_equal(th_alloc_live(), 0); /* only the header was the library's */
    th_alloc_reset();
}

static void wrap_enomem_keeps_data(void **state)
{
    (void)state;
    reset_frees();
    char *p = malloc(8);
    th_alloc_install();
    th_alloc_fail_at(1);
    errno = 0;
    assert_null(rill_bytes_wrap(p, 8, count_free));
    assert_int_equal(errno, ENOMEM);
    assert_true(th_alloc_failed());
    assert_int_equal(atomic_load(&frees), 0); /* still the caller's */
    errno = 0;
    assert_null(rill_bytes_new("abc", 3));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(rill_bytes_static("abc", 3));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(th_alloc_live(), 0);
    th_alloc_reset();
    free(p);
}

/* Two threads each take and drop a million references on one string; a lost update would
 * free it early (free_fn before the end) or never. */
#define PAIRS 1000000

static pthread_barrier_t start_line; /* both threads start together, so they overlap */

static void *ref_unref_loop(void *arg)
{
    rill_bytes *b = arg;
    pthread_barrier_wait(&start_line);
    for (int i = 0; i < PAIRS; i++) {
        rill_bytes_ref(b);
        rill_bytes_unref(b);
    }
    return NULL;
}

static void threads_count_exactly(void **state)
{
    (void)state;
    reset_frees();
    rill_bytes *b = rill_bytes_wrap(malloc(32), 32, count_free);
    assert_non_null(b);
    pthread_t t[2];
    pthread_barrier_init(&start_line, NULL, 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, ref_unref_loop, b), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start_line);
    assert_int_equal(atomic_load(&frees), 0);
    rill_bytes_unref(b);
    assert_int_equal(atomic_load(&frees), 1);
}

/* The last reference dropped on another thread still frees exactly once. */
static void *unref_once(void *arg)
{
    rill_bytes_unref(arg);
    return NULL;
}

static void threads_race_to_last_unref(void **state)
{
    (void)state;
    reset_frees();
    for (int round = 0; round < 200; round++) {
        rill_bytes *b = rill_bytes_wrap(malloc(4), 4, count_free);
        assert_non_null(b);
        rill_bytes_ref(b);
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&t[i], NULL, unref_once, b), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        assert_int_equal(atomic_load(&frees), round + 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_copies),
        cmocka_unit_test(new_one_allocation),
        cmocka_unit_test(empty_strings),
        cmocka_unit_test(wrap_frees_once_at_last_unref),
        cmocka_unit_test(wrap_without_free_fn),
        cmocka_unit_test(static_is_not_freed),
        cmocka_unit_test(wrap_enomem_keeps_data),
        cmocka_unit_test(threads_count_exactly),
        cmocka_unit_test(threads_race_to_last_unref),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
