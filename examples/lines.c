/* examples/lines.c - numbers the records of stdin.  A record ends where a regular
 * expression matches: by default a line end of any style ("\r\n", "\n" or a lone "\r").
 *
 *   printf 'one\r\ntwo\nthree' | example_lines       ->  1 one, 2 two, 3 three
 *   printf 'a; b;c' | example_lines ';\s*'           ->  1 a; 2 b; 3 c
 *
 * Shows rill_stream_read_until_regex: rill matches as bytes arrive, and a match that might
 * continue in the next read ("\r" then "\n") waits for it instead of being cut short. */
#include <rill.h>

#include <stdio.h>

static rill_stream *out;
static rill_regex *re;
static unsigned long count;
static int status;

/* Writes "     N  record" and a newline, the record's own line end trimmed. */
static void print_record(const char *data, size_t len)
{
    char num[32];
    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    int n = snprintf(num, sizeof num, "%6lu  ", ++count);
    struct iovec iov[3] = {{num, (size_t)n}, {(void *)data, len}, {"\n", 1}};
    rill_stream_writev(out, iov, 3, NULL, NULL); /* copies what cannot be written now */
}

/* A record (data/len, borrowed, ends with the match), or the end: RILL_EOF with the
 * bytes after the last match, RILL_ENOBUFS for a record over the stream's max buffer.
 * Asking for the next record from inside this callback keeps records flowing without
 * stopping the input in between. */
static void on_record(rill_stream *in, int st, const char *data, size_t len, void *arg)
{
    (void)arg;
    if (st == 0) {
        print_record(data, len);
        rill_stream_read_until_regex(in, re, on_record, NULL);
        return;
    }
    if (st == RILL_EOF && len)
        print_record(data, len); /* the last record had no line end */
    else if (st != RILL_EOF) {
        fprintf(stderr, "example_lines: %s (%s)\n", rill_strerror(st), rill_err_name(st));
        status = 1;
    }
    rill_stream_close(in);
    rill_stream_close_gracefully(out); /* once every queued line is written */
}

int main(int argc, char **argv)
{
    int err;
    size_t at;
    char msg[128];
    if (!(re = rill_regex_new(argc > 1 ? argv[1] : "\r\n|\n|\r", &err, &at))) {
        rill_regex_error_text(err, msg, sizeof msg);
        fprintf(stderr, "example_lines: bad pattern at %zu: %s\n", at, msg);
        return 2;
    }
    rill_loop *loop = rill_loop_new(NULL);
    rill_stream *in = loop ? rill_stdin(loop) : NULL;
    out = loop ? rill_stdout(loop) : NULL;
    if (!in || !out) {
        fprintf(stderr, "example_lines: %s\n", rill_strerror(-errno));
        return 1;
    }
    rill_stream_read_until_regex(in, re, on_record, NULL); /* starts reading stdin */
    rill_loop_run(loop, RILL_RUN_DEFAULT); /* until both streams are closed */
    rill_regex_free(re);
    return rill_loop_free(loop) == 0 ? status : 1;
}
