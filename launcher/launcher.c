/*
 * calico-py's launcher: the thin path of the executables in /opt/cni/bin.
 *
 * A CNI request is handed to the node agent (calico-py agent) over its unix
 * socket; the agent runs the Python plugin in a warm worker. Starting the
 * frozen Python program only to forward a request costs ~45 ms, more than
 * the whole request in the agent, so the forwarding is done here.
 *
 * Whenever the agent cannot take the request (no socket, nothing answers,
 * no "ready" in time, another network namespace, a worker that died), the
 * launcher executes the frozen program with the same arguments, environment
 * and stdin: the cold path. A dead or hung agent never fails a pod.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define DEFAULT_SOCKET "/run/calico-py/agent.sock"
#define SOCKET_ENV "CALICO_PY_AGENT_SOCKET"
#define FROZEN_NAME "calico-py"
#define READY_TIMEOUT_MS 2000
#define RESULT_TIMEOUT_MS 300000
#define MAX_REPLY (4u * 1024u * 1024u)

static const char *forwarded_env[] = {
    "CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", NULL,
};

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

static int wait_readable(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        return r > 0 ? 0 : -1;
    }
}

static int read_exactly(int fd, void *dst, size_t n, int timeout_ms) {
    char *p = dst;
    while (n) {
        if (wait_readable(fd, timeout_ms) < 0) return -1;
        ssize_t got = read(fd, p, n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
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
static void run_cold(char **argv, const struct buf *input, int have_input) {
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
    /* The agent was tried already; the frozen program must not try again. */
    setenv(SOCKET_ENV, "off", 1);
    execv(frozen, argv);
    fprintf(stderr, "calico-py launcher: cannot execute %s: %s\n", frozen, strerror(errno));
    exit(1);
}

static int forward(int sock, char **argv, const struct buf *input, int *exit_code, struct buf *out) {
    struct stat ns;
    if (stat("/proc/self/ns/net", &ns) < 0) return -1;
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
    char tail[96];
    snprintf(tail, sizeof tail, ", \"netns\": [%llu, %llu]}", (unsigned long long)ns.st_dev,
             (unsigned long long)ns.st_ino);
    buf_str(&req, tail);
    uint32_t size = htonl((uint32_t)(req.len - 4));
    memcpy(req.data, &size, 4);
    int sent = write_all(sock, req.data, req.len);
    free(req.data);
    if (sent < 0) return -1;

    char ready;
    if (read_exactly(sock, &ready, 1, READY_TIMEOUT_MS) < 0 || ready != 'R') return -1;
    if (write_all(sock, "G", 1) < 0) return -1;

    uint32_t frame_len, code;
    if (read_exactly(sock, &frame_len, 4, RESULT_TIMEOUT_MS) < 0) return -1;
    frame_len = ntohl(frame_len);
    if (frame_len < 4 || frame_len > MAX_REPLY) return -1;
    if (read_exactly(sock, &code, 4, RESULT_TIMEOUT_MS) < 0) return -1;
    out->len = 0;
    if (frame_len > 4) {
        char *body = malloc(frame_len - 4);
        if (!body || read_exactly(sock, body, frame_len - 4, RESULT_TIMEOUT_MS) < 0) return -1;
        buf_put(out, body, frame_len - 4);
        free(body);
    }
    *exit_code = (int)ntohl(code);
    return 0;
}

int main(int argc, char **argv) {
    (void)argc;
    const char *command = getenv("CNI_COMMAND");
    const char *path = getenv(SOCKET_ENV);
    if (!path || !*path) path = DEFAULT_SOCKET;
    if (!command || !*command || strcmp(path, "off") == 0 || access(path, F_OK) != 0)
        run_cold(argv, NULL, 0);

    struct buf input = {0};
    if (read_stdin(&input) < 0) run_cold(argv, &input, 1);

    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (sock < 0 || strlen(path) >= sizeof addr.sun_path) run_cold(argv, &input, 1);
    strcpy(addr.sun_path, path);
    /* Bounds connect() on a full backlog and writes to an agent that stopped reading. */
    struct timeval send_timeout = {.tv_sec = 0, .tv_usec = 500000};
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) run_cold(argv, &input, 1);

    int code = 1;
    struct buf out = {0};
    if (forward(sock, argv, &input, &code, &out) < 0) {
        close(sock);
        run_cold(argv, &input, 1);
    }
    if (out.len && write_all(STDOUT_FILENO, out.data, out.len) < 0) return 1;
    return code;
}
