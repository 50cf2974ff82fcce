/* tests/test_err.c - error codes: names, messages, the name<->code inverse, getaddrinfo's. */
#include "harness.h"

#include <netdb.h>
#include <string.h>

#include "internal.h"

/* Every code of both maps, built from the same X-macros as the library's table. */
static const int all_codes[] = {
#define X_ERRNO(name) RILL_##name,
    RILL_ERRNO_MAP(X_ERRNO)
#undef X_ERRNO
#define X_LIB(name, value, msg) RILL_##name,
    RILL_LIBERR_MAP(X_LIB)
#undef X_LIB
};
static const char *const all_names[] = {
#define X_ERRNO(name) #name,
    RILL_ERRNO_MAP(X_ERRNO)
#undef X_ERRNO
#define X_LIB(name, value, msg) #name,
    RILL_LIBERR_MAP(X_LIB)
#undef X_LIB
};
#define N_CODES (sizeof all_codes / sizeof all_codes[0])

static void name_code_inverse(void **state)
{
    (void)state;
    assert_true(N_CODES > 140); /* the whole errno map plus the library's codes */
    for (size_t i = 0; i < N_CODES; i++) {
        int c = all_codes[i];
        assert_true(c < 0);
        assert_string_equal(rill_err_name(c), all_names[i]);
        assert_int_equal(rill_err_code(rill_err_name(c)), c);
    }
}

static void every_code_has_a_message(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CODES; i++) {
        const char *m = rill_strerror(all_codes[i]);
        assert_non_null(m);
        if (strcmp(m, "unknown error") == 0)
            fail_msg("%s has no message", all_names[i]);
        assert_true(strlen(m) > 0);
    }
}

static void codes_are_distinct(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CODES; i++)
        for (size_t j = i + 1; j < N_CODES; j++)
            if (all_codes[i] == all_codes[j])
                fail_msg("%s and %s share %d", all_names[i], all_names[j], all_codes[i]);
}

static void errno_values_and_messages(void **state)
{
    (void)state;
    assert_int_equal(RILL_ECONNRESET, -ECONNRESET);
    assert_int_equal(RILL_EAGAIN, -EAGAIN);
    assert_int_equal(RILL_ENOMEM, -ENOMEM);
    assert_string_equal(rill_strerror(RILL_ECONNRESET), "Connection reset by peer");
    assert_string_equal(rill_strerror(RILL_ENOENT), "No such file or directory");
    assert_string_equal(rill_err_name(RILL_ECONNRESET), "ECONNRESET");
    assert_string_equal(rill_strerror(0), "success");
}

static void library_codes(void **state)
{
    (void)state;
    assert_string_equal(rill_err_name(RILL_EOF), "EOF");
    assert_string_equal(rill_strerror(RILL_EOF), "end of stream");
    assert_string_equal(rill_err_name(RILL_EAI_NONAME), "EAI_NONAME");
    assert_string_equal(rill_strerror(RILL_ENOMATCH), "no match");
    assert_int_equal(rill_err_code("ECLOSED"), RILL_ECLOSED);
    assert_int_equal(rill_err_code("EPENDING"), RILL_EPENDING);
}

static void aliases(void **state)
{
    (void)state;
    assert_int_equal(rill_err_code("EWOULDBLOCK"), RILL_EWOULDBLOCK);
    assert_int_equal(rill_err_code("EWOULDBLOCK"), -EWOULDBLOCK);
    assert_int_equal(rill_err_code("EDEADLOCK"), -EDEADLOCK);
    assert_int_equal(rill_err_code("ENOTSUP"), -ENOTSUP);
    /* An alias's value names its canonical code. */
    assert_string_equal(rill_err_name(RILL_EWOULDBLOCK), "EAGAIN");
    assert_string_equal(rill_err_name(RILL_ENOTSUP), "EOPNOTSUPP");
}

static void unknown_values(void **state)
{
    (void)state;
    const int bad[] = {1, ECONNRESET, -100000, -4000, -3000, -3011, -4096, INT32_MIN, 12345};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_string_equal(rill_err_name(bad[i]), "UNKNOWN");
        assert_string_equal(rill_strerror(bad[i]), "unknown error");
    }
    assert_string_equal(rill_err_name(0), "UNKNOWN");
    assert_int_equal(rill_err_code(NULL), 0);
    assert_int_equal(rill_err_code(""), 0);
    assert_int_equal(rill_err_code("UNKNOWN"), 0);
    assert_int_equal(rill_err_code("econnreset"), 0); /* names are exact */
    assert_int_equal(rill_err_code("ECONNRESETX"), 0);
}

static void predicates(void **state)
{
    (void)state;
    assert_true(rill_is_blocked(RILL_EAGAIN));
    assert_true(rill_is_blocked(RILL_EWOULDBLOCK));
    assert_true(rill_is_blocked(-EWOULDBLOCK));
    assert_false(rill_is_blocked(0));
    assert_false(rill_is_blocked(RILL_EINTR));
    assert_false(rill_is_blocked(EAGAIN)); /* codes are negative */
    assert_true(rill_is_timedout(RILL_ETIMEDOUT));
    assert_false(rill_is_timedout(RILL_EAGAIN));
    assert_false(rill_is_timedout(0));
}

static void gai_errors(void **state)
{
    (void)state;
    assert_int_equal(rill__gai_error(0), 0);
    assert_int_equal(rill__gai_error(EAI_NONAME), RILL_EAI_NONAME);
    assert_int_equal(rill__gai_error(EAI_AGAIN), RILL_EAI_AGAIN);
    assert_int_equal(rill__gai_error(EAI_FAIL), RILL_EAI_FAIL);
    assert_int_equal(rill__gai_error(EAI_FAMILY), RILL_EAI_FAMILY);
    assert_int_equal(rill__gai_error(EAI_MEMORY), RILL_EAI_MEMORY);
    assert_int_equal(rill__gai_error(EAI_SERVICE), RILL_EAI_SERVICE);
    assert_int_equal(rill__gai_error(EAI_SOCKTYPE), RILL_EAI_SOCKTYPE);
    assert_int_equal(rill__gai_error(EAI_BADFLAGS), RILL_EAI_BADFLAGS);
    assert_int_equal(rill__gai_error(EAI_NODATA), RILL_EAI_NODATA);
    assert_int_equal(rill__gai_error(EAI_ADDRFAMILY), RILL_EAI_ADDRFAMILY);
    errno = ECONNREFUSED;
    assert_int_equal(rill__gai_error(EAI_SYSTEM), RILL_ECONNREFUSED);
    /* An EAI_SYSTEM whose errno was lost still reports a failure. */
    errno = 0;
    assert_true(rill__gai_error(EAI_SYSTEM) < 0);
    assert_true(rill__gai_error(12345) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(name_code_inverse),
        cmocka_unit_test(every_code_has_a_message),
        cmocka_unit_test(codes_are_distinct),
        cmocka_unit_test(errno_values_and_messages),
        cmocka_unit_test(library_codes),
        cmocka_unit_test(aliases),
        cmocka_unit_test(unknown_values),
        cmocka_unit_test(predicates),
        cmocka_unit_test(gai_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
