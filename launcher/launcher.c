/*
 * calico-py's launcher: the thin path of the executables in /opt/cni/bin.
 *
 * A CNI request is handed to the node agent (calico-py agent) over its unix
 * socket; the agent runs the Python plugin in a warm worker. Starting the
 * frozen Python program only to forward a request costs ~45 ms, more than
 * the whole request in the agent, so the forwarding is done here.
 *
 * Never twice, never lost. Until the go byte is sent nothing has happened,
 * so whenever the agent cannot take the request (no socket, nothing answers,
 * no "ready" in time, "not ready" from another network namespace, a request
 * bigger than the agent accepts) the launcher executes the frozen program
 * with the same arguments, environment and stdin: the cold path. A dead or
 * hung agent never fails a pod. Once the go byte is sent the agent owns the
 * request and the launcher never runs it: without a complete answer (worker
 * killed, deadline, bad frame) it prints CNI error 11, try again later.
 *
 * Everything else (no CNI_COMMAND: `calico-py agent`, `--version`, ...) is
 * the frozen program's, executed with the environment untouched.
 *
 * Protocol (see cni_calico_py/agent/framing.py): a length-prefixed JSON
 * request; one byte back, 'R' ready or 'N' not; the go byte 'G'; then a
 * frame holding a 4-byte exit code and the bytes to print.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define DEFAULT_SOCKET "/run/calico-py/agent.sock"
#define SOCKET_ENV "CALICO_PY_AGENT_SOCKET"
/* Set for the frozen program when a CNI request goes cold: the agent was tried. */
#define TRIED_ENV "CALICO_PY_AGENT_TRIED"
#define FROZEN_NAME "calico-py"
#define READY_TIMEOUT_MS 2000
/*
 * Bounds, each above the one before it, so the launcher always hears how the
 * worker's request ended (an answer, or EOF when the worker dies) before it
 * gives up: lock waits (ipam.lockTimeoutSeconds, at most 120 s; the
 * attachment lock, 120 s) < the worker's deadline (worker.py,
 * REQUEST_DEADLINE_SECONDS, 300 s from accept, then SIGALRM ends it) < this,
 * counted from the go byte. client.py's RESULT_DEADLINE is the same.
 */
#define RESULT_DEADLINE_MS 330000
#define DEADLINE_TEXT "330 s"
/* framing.MAX_FRAME: the agent refuses bigger frames, both ways. */
#define MAX_FRAME (4u * 1024u * 1024u)
#define LATEST_VERSION "1.1.0"

static const char *forwarded_env[] = {
    "CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", NULL,
};

static const char *supported_versions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", NULL};

struct buf {
    char *data;
    size_t len, cap;
};

static void buf_put(struct buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) { perror("calico-py launcher"); exit(1); }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

static void buf_str(struct buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* Each byte becomes one code point (latin-1), as the agent decodes it. */
static void buf_json_string(struct buf *b, const unsigned char *s, size_t n) {
    buf_str(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_put(b, esc, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            char esc[7];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_put(b, esc, 6);
        } else {
            buf_put(b, &c, 1);
        }
    }
    buf_str(b, "\"");
}

static int read_stdin(struct buf *b) {
    char chunk[65536];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf_put(b, chunk, (size_t)n);
    }
}

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Why a read failed, for the caller's message. */
enum read_error { READ_OK = 0, READ_TIMEOUT, READ_CLOSED, READ_FAILED };

/* n bytes, all of them before deadline (a now_ms() time). */
static enum read_error read_exactly(int fd, void *dst, size_t n, long long deadline) {
    char *p = dst;
    while (n) {
        long long left = deadline - now_ms();
        if (left <= 0) return READ_TIMEOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return READ_FAILED;
        if (r == 0) return READ_TIMEOUT;
        ssize_t got = read(fd, p, n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return READ_FAILED;
        if (got == 0) return READ_CLOSED;
        p += got;
        n -= (size_t)got;
    }
    return READ_OK;
}

static int write_all(int fd, const void *src, size_t n) {
    const char *p = src;
    while (n) {
        ssize_t put = write(fd, p, n);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) return -1;
        p += put;
        n -= (size_t)put;
    }
    return 0;
}

/* The cold path: the frozen program beside this launcher, same argv[0]. */
static void run_cold(char **argv, const struct buf *input, int have_input, int cni_request) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) { perror("calico-py launcher: readlink /proc/self/exe"); exit(1); }
    self[n] = '\0';
    char frozen[PATH_MAX];
    snprintf(frozen, sizeof frozen, "%s/%s", dirname(self), FROZEN_NAME);
    if (have_input) {
        /* stdin was consumed: hand the frozen program the same bytes. */
        int fd = memfd_create("calico-py-stdin", 0);
        if (fd < 0 || write_all(fd, input->data, input->len) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
            dup2(fd, STDIN_FILENO) < 0) {
            perror("calico-py launcher: replaying stdin");
            exit(1);
        }
        close(fd);
    }
    /* The agent was tried already; the frozen program must not try again.
     * Only for CNI requests: `calico-py agent` reads the socket setting. */
    if (cni_request) setenv(TRIED_ENV, "1", 1);
    signal(SIGPIPE, SIG_DFL);
    execv(frozen, argv);
    fprintf(stderr, "calico-py launcher: cannot execute %s: %s\n", frozen, strerror(errno));
    exit(1);
}

/* The request's cniVersion if we speak it, found crudely (first "cniVersion" key). */
static const char *request_version(const struct buf *input) {
    static const char key[] = "\"cniVersion\"";
    if (!input->len) return LATEST_VERSION;
    const char *end = input->data + input->len;
    const char *p = memmem(input->data, input->len, key, sizeof key - 1);
    if (!p) return LATEST_VERSION;
    p += sizeof key - 1;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    if (p >= end || *p++ != ':') return LATEST_VERSION;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    if (p >= end || *p++ != '"') return LATEST_VERSION;
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (!q) return LATEST_VERSION;
    for (const char **v = supported_versions; *v; v++)
        if (strlen(*v) == (size_t)(q - p) && memcmp(*v, p, (size_t)(q - p)) == 0) return *v;
    return LATEST_VERSION;
}

/* After the go byte and no complete answer: error 11, and the request is not run here. */
static int unanswered(const struct buf *input, const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg,
             "the node agent took the request but gave no complete answer (%s); "
             "it was not run again here", what);
    static const char details[] = "the request may have run in part: try again later "
                                  "(the runtime's DEL cleans up what it left)";
    struct buf out = {0};
    buf_str(&out, "{\"cniVersion\": \"");
    buf_str(&out, request_version(input));
    buf_str(&out, "\", \"code\": 11, \"msg\": ");
    buf_json_string(&out, (const unsigned char *)msg, strlen(msg));
    buf_str(&out, ", \"details\": ");
    buf_json_string(&out, (const unsigned char *)details, strlen(details));
    buf_str(&out, "}\n");
    write_all(STDOUT_FILENO, out.data, out.len);
    fprintf(stderr, "calico-py: %s\n", msg);
    return 1;
}

static const char *read_problem(enum read_error e) {
    switch (e) {
    case READ_TIMEOUT: return "no answer within " DEADLINE_TEXT;
    case READ_CLOSED: return "the connection closed mid-answer: the agent's worker ended";
    default: return "reading the answer failed";
    }
}

enum forwarded { FORWARDED, GO_COLD, NO_ANSWER };

static enum forwarded forward(int sock, char **argv, const struct buf *input, int *exit_code,
                              struct buf *out, const char **problem) {
    char *prog = strrchr(argv[0], '/');
    prog = prog ? prog + 1 : argv[0];

    struct buf req = {0};
    buf_put(&req, "\0\0\0\0", 4);
    buf_str(&req, "{\"op\": \"cni\", \"program\": ");
    buf_json_string(&req, (const unsigned char *)prog, strlen(prog));
    buf_str(&req, ", \"env\": {");
    int first = 1;
    for (const char **name = forwarded_env; *name; name++) {
        const char *value = getenv(*name);
        if (!value) continue;
        if (!first) buf_str(&req, ", ");
        first = 0;
        buf_json_string(&req, (const unsigned char *)*name, strlen(*name));
        buf_str(&req, ": ");
        buf_json_string(&req, (const unsigned char *)value, strlen(value));
    }
    buf_str(&req, "}, \"stdin\": ");
    buf_json_string(&req, (const unsigned char *)input->data, input->len);
    buf_str(&req, "}");
    if (req.len - 4 > MAX_FRAME) {
        /* The agent would refuse it: serve it here rather than be cut off. */
        free(req.data);
        return GO_COLD;
    }
    uint32_t size = htonl((uint32_t)(req.len - 4));
    memcpy(req.data, &size, 4);
    int sent = write_all(sock, req.data, req.len);
    free(req.data);
    if (sent < 0) return GO_COLD;

    char ready;
    if (read_exactly(sock, &ready, 1, now_ms() + READY_TIMEOUT_MS) != READ_OK || ready != 'R')
        return GO_COLD;
    if (write_all(sock, "G", 1) < 0) return GO_COLD;

    /* The agent owns the request now: from here on, never the cold path. */
    long long deadline = now_ms() + RESULT_DEADLINE_MS;
    uint32_t frame_len, code;
    enum read_error e = read_exactly(sock, &frame_len, 4, deadline);
    if (e != READ_OK) { *problem = read_problem(e); return NO_ANSWER; }
    frame_len = ntohl(frame_len);
    if (frame_len < 4 || frame_len > MAX_FRAME) {
        *problem = "the answer was not a result frame";
        return NO_ANSWER;
    }
    e = read_exactly(sock, &code, 4, deadline);
    if (e != READ_OK) { *problem = read_problem(e); return NO_ANSWER; }
    out->len = 0;
    if (frame_len > 4) {
        char *body = malloc(frame_len - 4);
        if (!body) { *problem = "no memory for the answer"; return NO_ANSWER; }
        e = read_exactly(sock, body, frame_len - 4, deadline);
        if (e != READ_OK) { *problem = read_problem(e); return NO_ANSWER; }
        buf_put(out, body, frame_len - 4);
        free(body);
    }
    *exit_code = (int)ntohl(code);
    return FORWARDED;
}

int main(int argc, char **argv) {
    (void)argc;
    /* An agent that closes early must be an error to handle, not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    const char *command = getenv("CNI_COMMAND");
    if (!command) run_cold(argv, NULL, 0, 0);
    const char *path = getenv(SOCKET_ENV);
    if (!path || !*path) path = DEFAULT_SOCKET;
    if (!*command || strcmp(path, "off") == 0 || access(path, F_OK) != 0)
        run_cold(argv, NULL, 0, 1);

    struct buf input = {0};
    if (read_stdin(&input) < 0) run_cold(argv, &input, 1, 1);

    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (sock < 0 || strlen(path) >= sizeof addr.sun_path) run_cold(argv, &input, 1, 1);
    strcpy(addr.sun_path, path);
    /* Bounds connect() on a full backlog and writes to an agent that stopped reading. */
    struct timeval send_timeout = {.tv_sec = 0, .tv_usec = 500000};
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) run_cold(argv, &input, 1, 1);

    int code = 1;
    struct buf out = {0};
    const char *problem = "";
    switch (forward(sock, argv, &input, &code, &out, &problem)) {
    case GO_COLD:
        close(sock);
        run_cold(argv, &input, 1, 1);
        break;
    case NO_ANSWER:
        return unanswered(&input, problem);
    case FORWARDED:
        break;
    }
    if (out.len && write_all(STDOUT_FILENO, out.data, out.len) < 0) return 1;
    return code;
}
