/*
 * wsload: a single-threaded epoll WebSocket load client for Pusher protocol 7 servers.
 *
 * Opens N connections to ws://HOST:PORT/PATH (a bounded number of handshakes in flight at a
 * time, so the server's accept queue is never overrun), waits for pusher:connection_established,
 * subscribes each connection to one channel (--channel: broadcast) or to PREFIX{i}
 * (--channel-prefix: targeted), then counts the events it receives until every connection has
 * --expect of them, or --timeout / --idle-timeout expires. Prints one JSON line with the result.
 *
 * Counted: complete text messages whose "event" does not start with "pusher:" or
 * "pusher_internal:". Latency: if the message contains "t":<CLOCK_MONOTONIC ns> (also in its
 * escaped form \"t\":<ns> inside the Pusher data string), receive time minus t.
 *
 * With --ready, prints {"ready":true,...} once every connection is subscribed (or has failed),
 * then keeps reading; with --stdin-stop it also ends when a line or EOF arrives on stdin.
 *
 * Build: gcc -O2 -o build/wsload wsload.c   (see the Makefile)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 100000
#define SCRATCH_SIZE (512 * 1024)
#define MAX_HTTP_RESPONSE 8192
#define MAX_MESSAGE (16 * 1024 * 1024)
#define MAX_EVENTS 1024

/* Latency histogram: 1 us buckets below 1 s, then 1 ms buckets up to 1000 s. */
#define HIST_FINE 1000000u
#define HIST_COARSE 1000000u
#define HIST_SIZE (HIST_FINE + HIST_COARSE + 1)

enum state {
    ST_IDLE = 0,     /* not started yet */
    ST_CONNECTING,   /* non-blocking connect() in progress */
    ST_UPGRADING,    /* HTTP upgrade request sent, reading the response */
    ST_OPEN,         /* 101 received, waiting for pusher:connection_established */
    ST_SUBSCRIBING,  /* pusher:subscribe sent */
    ST_SUBSCRIBED,   /* subscription_succeeded received */
    ST_DEAD,         /* closed or failed */
};

struct conn {
    int fd;
    int index;
    enum state state;
    char key[25];        /* Sec-WebSocket-Key (base64 of 16 bytes) */
    uint8_t *in;         /* bytes received but not parsed yet (partial frame / header) */
    size_t in_len, in_cap;
    uint8_t *msg;        /* fragmented message being assembled */
    size_t msg_len, msg_cap;
    int msg_opcode;      /* opcode of the fragmented message, 0 if none */
    uint8_t *out;        /* bytes not yet written */
    size_t out_len, out_cap;
    int want_write;
    uint64_t messages;
    uint64_t t_connect;  /* when connect() was called */
    int done;            /* reached --expect */
};

/* ------------------------------------------------------------------ options and globals */

static const char *opt_host = "127.0.0.1";
static int opt_port = 6001;
static const char *opt_path = "/app/bench-key?protocol=7&client=wsload&version=1.0";
static int opt_connections = 1;
static const char *opt_channel = NULL;
static const char *opt_prefix = NULL;
static int opt_first_index = 0;
static long opt_expect = 0;
static double opt_timeout = 60.0;
static double opt_idle_timeout = 0.0;
static int opt_window = 64;       /* handshakes in flight (under asyncio's default backlog 100) */
static int opt_batch = 0;         /* if > 0: open connections in batches of this size ... */
static double opt_batch_pause = 0.0; /* ... pausing this many seconds between batches */
static int opt_ready = 0;
static int opt_stdin_stop = 0;
static int opt_rcvbuf = 0;
static int opt_verify_accept = 1;

static struct conn *conns;
static int epfd;
static uint8_t *scratch;
static struct sockaddr_in server_addr;
static uint32_t *hist;
static uint32_t *open_us;      /* per connection: connect() -> connection_established, in us */

static int started = 0;        /* connections for which connect() was called */
static int inflight = 0;       /* started but not yet established or dead */
static int established = 0;    /* connection_established received */
static int subscribing = 0;    /* pusher:subscribe sent, no answer yet */
static int subscribed = 0;     /* currently subscribed and alive */
static int subscribed_ever = 0;
static int dead = 0;
static int complete = 0;       /* subscribed connections that received --expect messages */
static int ready_printed = 0;
static int batch_opened = 0;
static uint64_t batch_pause_until = 0;

static uint64_t messages = 0, bytes_received = 0, latency_samples = 0;
static uint64_t pusher_messages = 0, pings_answered = 0, pusher_pings_answered = 0;
static uint64_t lat_max_ns = 0;
static double lat_sum_ns = 0;
static uint64_t t_start = 0, t_first_open = 0, t_last_open = 0, t_last_subscribed = 0;
static uint64_t t_first_msg = 0, t_last_msg = 0, t_last_activity = 0;
static struct rusage ru_first_msg, ru_last_msg;
static int have_ru_last = 0;

static uint64_t err_connect = 0, err_upgrade = 0, err_reset = 0, err_protocol = 0;
static uint64_t closed_by_server = 0, pusher_errors = 0, subscription_errors = 0;
static char first_error[256] = "";

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void note_error(const char *fmt, ...) {
    if (first_error[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(first_error, sizeof first_error, fmt, ap);
    va_end(ap);
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wsload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) die("out of memory (%zu bytes)", n);
    return q;
}

static void buf_reserve(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 256;
    while (n < need) n *= 2;
    *buf = xrealloc(*buf, n);
    *cap = n;
}

/* ------------------------------------------------------------------ SHA-1 and base64 */

struct sha1 {
    uint32_t h[5];
    uint64_t len;
    uint8_t block[64];
    size_t used;
};

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void sha1_block(struct sha1 *s, const uint8_t *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6; }
        uint32_t t = ROL(a, 5) + f + e + k + w[i];
        e = d; d = c; c = ROL(b, 30); b = a; a = t;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e;
}

static void sha1_init(struct sha1 *s) {
    s->h[0] = 0x67452301; s->h[1] = 0xEFCDAB89; s->h[2] = 0x98BADCFE;
    s->h[3] = 0x10325476; s->h[4] = 0xC3D2E1F0;
    s->len = 0; s->used = 0;
}

static void sha1_update(struct sha1 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->len += n;
    while (n--) {
        s->block[s->used++] = *p++;
        if (s->used == 64) { sha1_block(s, s->block); s->used = 0; }
    }
}

static void sha1_final(struct sha1 *s, uint8_t out[20]) {
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80;
    sha1_update(s, &pad, 1);
    pad = 0;
    while (s->used != 56) sha1_update(s, &pad, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(s, len, 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24); out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8); out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0, o = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18]; out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63]; out[o++] = tbl[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tbl[v >> 18]; out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = 0;
}

/* ------------------------------------------------------------------ connection lifecycle */

static void conn_kill(struct conn *c) {
    if (c->state == ST_DEAD) return;
    if (c->state == ST_CONNECTING || c->state == ST_UPGRADING || c->state == ST_OPEN) inflight--;
    if (c->state == ST_SUBSCRIBING) subscribing--;
    if (c->state == ST_SUBSCRIBED) subscribed--;
    if (c->done) complete--;
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = ST_DEAD;
    dead++;
    free(c->in); c->in = NULL; c->in_len = c->in_cap = 0;
    free(c->msg); c->msg = NULL; c->msg_len = c->msg_cap = 0;
    free(c->out); c->out = NULL; c->out_len = c->out_cap = 0;
}

static void fail(struct conn *c, uint64_t *counter, const char *what) {
    (*counter)++;
    note_error("connection %d: %s", c->index, what);
    conn_kill(c);
}

static void update_events(struct conn *c) {
    struct epoll_event ev = {.events = EPOLLIN | (c->want_write ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static int flush_out(struct conn *c) {
    while (c->out_len) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            fail(c, &err_reset, strerror(errno));
            return -1;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    int want = c->out_len > 0 || c->state == ST_CONNECTING;
    if (want != c->want_write) {
        c->want_write = want;
        update_events(c);
    }
    return 0;
}

static int queue_bytes(struct conn *c, const void *data, size_t n) {
    buf_reserve(&c->out, &c->out_cap, c->out_len + n);
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
    return flush_out(c);
}

/* A masked client frame (RFC 6455 §5.3). */
static int send_frame(struct conn *c, int opcode, const void *payload, size_t n) {
    uint8_t header[14];
    size_t h = 0;
    header[h++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        header[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        header[h++] = 0x80 | 126;
        header[h++] = (uint8_t)(n >> 8);
        header[h++] = (uint8_t)n;
    } else {
        header[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) header[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    uint32_t mask = (uint32_t)rng_next();
    uint8_t *m = header + h;
    memcpy(m, &mask, 4);
    h += 4;
    buf_reserve(&c->out, &c->out_cap, c->out_len + h + n);
    memcpy(c->out + c->out_len, header, h);
    uint8_t *dst = c->out + c->out_len + h;
    const uint8_t *src = payload;
    for (size_t i = 0; i < n; i++) dst[i] = src[i] ^ m[i & 3];
    c->out_len += h + n;
    return flush_out(c);
}

static int send_text(struct conn *c, const char *text) {
    return send_frame(c, 1, text, strlen(text));
}

static void start_connection(struct conn *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket(): %s (raise the open-files limit?)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt_rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &opt_rcvbuf, sizeof opt_rcvbuf);
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->want_write = 1;
    started++;
    inflight++;
    batch_opened++;
    c->t_connect = now_ns();
    if (!t_first_open) t_first_open = c->t_connect;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0 &&
        errno != EINPROGRESS) {
        fail(c, &err_connect, strerror(errno));
    }
}

static void send_upgrade(struct conn *c) {
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng_next();
        memcpy(raw + i, &r, 8);
    }
    base64(raw, 16, c->key);
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "\r\n",
                     opt_path, opt_host, opt_port, c->key);
    c->state = ST_UPGRADING;
    queue_bytes(c, req, (size_t)n);
}

/* Every connection has been opened and is either subscribed or dead. */
static int settled(void) {
    return started == opt_connections && inflight == 0 && subscribing == 0;
}

static void maybe_print_ready(void) {
    if (!opt_ready || ready_printed || !settled()) return;
    ready_printed = 1;
    printf("{\"ready\":true,\"subscribed\":%d,\"failed\":%d}\n", subscribed, dead);
    fflush(stdout);
}

static void send_subscribe(struct conn *c) {
    char frame[512];
    if (opt_channel)
        snprintf(frame, sizeof frame,
                 "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"%s\"}}", opt_channel);
    else
        snprintf(frame, sizeof frame,
                 "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"%s%d\"}}", opt_prefix,
                 opt_first_index + c->index);
    c->state = ST_SUBSCRIBING;
    subscribing++;
    send_text(c, frame);
}

/* ------------------------------------------------------------------ message handling */

/* Finds "key": (or \"key\": as it appears inside an escaped JSON string); returns a pointer
 * just after the colon and any spaces, or NULL. */
static const uint8_t *find_key(const uint8_t *p, size_t n, const char *key) {
    size_t k = strlen(key);
    const uint8_t *end = p + n;
    const uint8_t *s = p;
    while (s < end) {
        const uint8_t *q = memchr(s, '"', (size_t)(end - s));
        if (!q || (size_t)(end - q) < k + 2) return NULL;
        if (memcmp(q + 1, key, k) == 0) {
            const uint8_t *r = q + 1 + k;
            if (r < end && *r == '\\') r++;
            if (r < end && *r == '"') {
                r++;
                while (r < end && (*r == ' ' || *r == '\t')) r++;
                if (r < end && *r == ':') {
                    r++;
                    while (r < end && (*r == ' ' || *r == '\t')) r++;
                    return r;
                }
            }
        }
        s = q + 1;
    }
    return NULL;
}

static void record_latency(uint64_t sent_ns, uint64_t recv_ns) {
    if (sent_ns == 0 || sent_ns > recv_ns) return;
    uint64_t d = recv_ns - sent_ns;
    uint64_t us = d / 1000;
    size_t bucket = us < HIST_FINE ? (size_t)us
                                   : HIST_FINE + (size_t)((us / 1000) < HIST_COARSE ? us / 1000
                                                                                     : HIST_COARSE);
    hist[bucket]++;
    latency_samples++;
    lat_sum_ns += (double)d;
    if (d > lat_max_ns) lat_max_ns = d;
}

static void on_user_message(struct conn *c, const uint8_t *p, size_t n, uint64_t t) {
    if (c->state != ST_SUBSCRIBED) return; /* events before subscribing are not ours */
    messages++;
    c->messages++;
    if (!t_first_msg) {
        t_first_msg = t;
        getrusage(RUSAGE_SELF, &ru_first_msg);
    }
    t_last_msg = t;
    if (opt_expect > 0 && !c->done && c->messages >= (uint64_t)opt_expect) {
        c->done = 1;
        complete++;
        if (complete >= subscribed && settled()) {
            getrusage(RUSAGE_SELF, &ru_last_msg);
            have_ru_last = 1;
        }
    }
    const uint8_t *v = find_key(p, n, "t");
    if (v) {
        const uint8_t *end = p + n;
        uint64_t ts = 0;
        int digits = 0;
        while (v < end && *v >= '0' && *v <= '9' && digits < 20) {
            ts = ts * 10 + (uint64_t)(*v - '0');
            v++;
            digits++;
        }
        if (digits) record_latency(ts, t);
    }
}

static int starts_with(const uint8_t *p, size_t n, const char *s) {
    size_t k = strlen(s);
    return n >= k && memcmp(p, s, k) == 0;
}

static void on_text(struct conn *c, const uint8_t *p, size_t n, uint64_t t) {
    const uint8_t *v = find_key(p, n, "event");
    if (!v || v >= p + n || *v != '"') {
        on_user_message(c, p, n, t);
        return;
    }
    v++;
    size_t rest = (size_t)(p + n - v);
    if (!starts_with(v, rest, "pusher:") && !starts_with(v, rest, "pusher_internal:")) {
        on_user_message(c, p, n, t);
        return;
    }
    pusher_messages++;
    if (starts_with(v, rest, "pusher:connection_established\"")) {
        if (c->state == ST_OPEN) {
            open_us[established] = (uint32_t)((t - c->t_connect) / 1000);
            established++;
            inflight--;
            t_last_open = t;
            send_subscribe(c);
        }
    } else if (starts_with(v, rest, "pusher_internal:subscription_succeeded\"")) {
        if (c->state == ST_SUBSCRIBING) {
            c->state = ST_SUBSCRIBED;
            subscribing--;
            subscribed++;
            subscribed_ever++;
            t_last_subscribed = t;
            maybe_print_ready();
        }
    } else if (starts_with(v, rest, "pusher:ping\"")) {
        pusher_pings_answered++;
        send_text(c, "{\"event\":\"pusher:pong\",\"data\":{}}");
    } else if (starts_with(v, rest, "pusher:subscription_error\"")) {
        subscription_errors++;
        note_error("connection %d: %.*s", c->index, (int)(n < 160 ? n : 160), p);
        if (c->state == ST_SUBSCRIBING) fail(c, &err_protocol, "subscription_error");
    } else if (starts_with(v, rest, "pusher:error\"")) {
        pusher_errors++;
        note_error("connection %d: %.*s", c->index, (int)(n < 160 ? n : 160), p);
    }
}

/* Handles one complete message (after reassembly). Returns -1 if the connection died. */
static int on_message(struct conn *c, int opcode, const uint8_t *p, size_t n, uint64_t t) {
    if (opcode == 1) on_text(c, p, n, t);
    /* binary messages are not part of the protocol: ignored */
    return c->state == ST_DEAD ? -1 : 0;
}

/* Parses as many complete frames as buf holds. Returns bytes consumed, or -1 if the
 * connection died. */
static ssize_t parse_frames(struct conn *c, uint8_t *buf, size_t len, uint64_t t) {
    size_t pos = 0;
    while (len - pos >= 2) {
        uint8_t b0 = buf[pos], b1 = buf[pos + 1];
        int fin = b0 & 0x80, opcode = b0 & 0x0F, masked = b1 & 0x80;
        uint64_t plen = b1 & 0x7F;
        size_t h = 2;
        if (plen == 126) {
            if (len - pos < 4) break;
            plen = (uint64_t)buf[pos + 2] << 8 | buf[pos + 3];
            h = 4;
        } else if (plen == 127) {
            if (len - pos < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = plen << 8 | buf[pos + 2 + i];
            h = 10;
        }
        if (masked) h += 4;
        if (plen > MAX_MESSAGE) {
            fail(c, &err_protocol, "frame too large");
            return -1;
        }
        if (len - pos < h + plen) break; /* incomplete: wait for more bytes */
        uint8_t *payload = buf + pos + h;
        if (masked) {
            const uint8_t *m = buf + pos + h - 4;
            for (uint64_t i = 0; i < plen; i++) payload[i] ^= m[i & 3];
        }
        pos += h + (size_t)plen;
        bytes_received += h + plen;

        if (opcode >= 8) { /* control frames: never fragmented */
            if (opcode == 9) { /* ping -> pong with the same payload */
                pings_answered++;
                if (send_frame(c, 10, payload, (size_t)plen) < 0) return -1;
            } else if (opcode == 8) { /* close: answer and drop */
                closed_by_server++;
                uint8_t code[2] = {0x03, 0xE8};
                send_frame(c, 8, code, 2);
                if (c->state != ST_DEAD) {
                    if (plen >= 2)
                        note_error("connection %d: closed by server, code %d %.*s", c->index,
                                   payload[0] << 8 | payload[1], (int)(plen - 2), payload + 2);
                    else
                        note_error("connection %d: closed by server", c->index);
                    conn_kill(c);
                }
                return -1;
            }
            continue;
        }
        if (opcode == 0) { /* continuation */
            if (!c->msg_opcode) {
                fail(c, &err_protocol, "continuation without a message");
                return -1;
            }
            buf_reserve(&c->msg, &c->msg_cap, c->msg_len + plen);
            memcpy(c->msg + c->msg_len, payload, plen);
            c->msg_len += plen;
            if (fin) {
                int op = c->msg_opcode;
                c->msg_opcode = 0;
                size_t mlen = c->msg_len;
                c->msg_len = 0;
                if (on_message(c, op, c->msg, mlen, t) < 0) return -1;
            }
        } else if (fin) {
            if (on_message(c, opcode, payload, (size_t)plen, t) < 0) return -1;
        } else {
            c->msg_opcode = opcode;
            buf_reserve(&c->msg, &c->msg_cap, plen);
            memcpy(c->msg, payload, plen);
            c->msg_len = plen;
        }
    }
    return (ssize_t)pos;
}

/* Checks the 101 response. Returns header length, 0 if incomplete, -1 if it failed. */
static ssize_t parse_upgrade(struct conn *c, const uint8_t *buf, size_t len) {
    const uint8_t *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) {
        if (len > MAX_HTTP_RESPONSE) {
            fail(c, &err_upgrade, "upgrade response too long");
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end - buf) + 4;
    if (hlen < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0) {
        char line[120];
        size_t l = 0;
        while (l < hlen && l < sizeof line - 1 && buf[l] != '\r') { line[l] = (char)buf[l]; l++; }
        line[l] = 0;
        fail(c, &err_upgrade, line);
        return -1;
    }
    if (opt_verify_accept) {
        struct sha1 s;
        uint8_t digest[20];
        char expected[32];
        sha1_init(&s);
        sha1_update(&s, c->key, strlen(c->key));
        sha1_update(&s, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
        sha1_final(&s, digest);
        base64(digest, 20, expected);
        /* case-insensitive header name search */
        int ok = 0;
        const char *name = "sec-websocket-accept:";
        size_t nl = strlen(name);
        for (size_t i = 0; i + nl < hlen; i++) {
            if (strncasecmp((const char *)buf + i, name, nl) == 0) {
                size_t j = i + nl;
                while (j < hlen && buf[j] == ' ') j++;
                ok = hlen - j >= strlen(expected) &&
                     memcmp(buf + j, expected, strlen(expected)) == 0;
                break;
            }
        }
        if (!ok) {
            fail(c, &err_upgrade, "bad Sec-WebSocket-Accept");
            return -1;
        }
    }
    c->state = ST_OPEN;
    return (ssize_t)hlen;
}

static void on_readable(struct conn *c) {
    /* The scratch buffer holds the connection's leftover bytes followed by what recv returns,
     * so one large recv serves many frames and only a partial tail is copied back. */
    size_t have = c->in_len;
    if (have >= SCRATCH_SIZE / 2) { /* a huge partial frame: read into its own buffer */
        buf_reserve(&c->in, &c->in_cap, have + SCRATCH_SIZE / 2);
    }
    uint8_t *buf;
    size_t room;
    if (have >= SCRATCH_SIZE / 2) {
        buf = c->in;
        room = c->in_cap - have;
    } else {
        buf = scratch;
        if (have) memcpy(scratch, c->in, have);
        room = SCRATCH_SIZE - have;
    }
    ssize_t n = recv(c->fd, buf + have, room, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        fail(c, &err_reset, strerror(errno));
        return;
    }
    if (n == 0) {
        fail(c, &err_reset, "connection closed by peer without a close frame");
        return;
    }
    uint64_t t = now_ns();
    t_last_activity = t;
    size_t len = have + (size_t)n;
    size_t pos = 0;
    if (c->state == ST_UPGRADING) {
        ssize_t h = parse_upgrade(c, buf, len);
        if (h < 0) return;
        if (h == 0) goto keep;
        pos = (size_t)h;
    }
    if (c->state >= ST_OPEN && c->state < ST_DEAD) {
        ssize_t used = parse_frames(c, buf + pos, len - pos, t);
        if (used < 0) return;
        pos += (size_t)used;
    }
keep:
    if (c->state == ST_DEAD) return;
    if (buf == c->in) {
        memmove(c->in, c->in + pos, len - pos);
        c->in_len = len - pos;
    } else {
        c->in_len = len - pos;
        if (c->in_len) {
            buf_reserve(&c->in, &c->in_cap, c->in_len);
            memcpy(c->in, buf + pos, c->in_len);
        }
        if (c->in_len == 0 && c->in_cap > 4096) { /* give big buffers back */
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
}

static void on_writable(struct conn *c) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            fail(c, &err_connect, strerror(err));
            return;
        }
        send_upgrade(c);
        return;
    }
    flush_out(c);
}

/* ------------------------------------------------------------------ output */

static double hist_percentile(double q) {
    if (!latency_samples) return 0;
    uint64_t target = (uint64_t)(q * (double)latency_samples);
    if (target >= latency_samples) target = latency_samples - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_SIZE; i++) {
        seen += hist[i];
        if (seen > target) {
            /* bucket midpoint, in milliseconds */
            if (i < HIST_FINE) return ((double)i + 0.5) / 1000.0;
            return (double)(i - HIST_FINE) + 0.5;
        }
    }
    return (double)lat_max_ns / 1e6;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

static void report(int timed_out, const char *reason) {
    uint64_t t_end = now_ns();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (!have_ru_last) ru_last_msg = ru; /* incomplete: CPU up to now (idle time costs ~0) */
    uint64_t min_pc = UINT64_MAX, max_pc = 0;
    for (int i = 0; i < opt_connections; i++) {
        if (conns[i].state != ST_SUBSCRIBED) continue;
        if (conns[i].messages < min_pc) min_pc = conns[i].messages;
        if (conns[i].messages > max_pc) max_pc = conns[i].messages;
    }
    if (min_pc == UINT64_MAX) min_pc = 0;
    double span = t_last_msg > t_first_msg ? (double)(t_last_msg - t_first_msg) / 1e9 : 0;
    double open_span = t_last_open > t_first_open ? (double)(t_last_open - t_first_open) / 1e9 : 0;
    double cpu_msgs = (tv_s(ru_last_msg.ru_utime) + tv_s(ru_last_msg.ru_stime)) -
                      (tv_s(ru_first_msg.ru_utime) + tv_s(ru_first_msg.ru_stime));
    printf("{\"connections\":%d,\"established\":%d,\"subscribed\":%d,\"alive\":%d,"
           "\"failed\":%d,\"complete\":%d,\"expect_per_connection\":%ld,\"messages\":%llu,"
           "\"expected_messages\":%llu,\"min_per_connection\":%llu,\"max_per_connection\":%llu,"
           "\"bytes\":%llu,\"pusher_messages\":%llu,",
           opt_connections, established, subscribed_ever, subscribed, dead, complete, opt_expect,
           (unsigned long long)messages, (unsigned long long)((uint64_t)opt_expect * (uint64_t)subscribed_ever),
           (unsigned long long)min_pc, (unsigned long long)max_pc,
           (unsigned long long)bytes_received, (unsigned long long)pusher_messages);
    printf("\"first_msg_ns\":%llu,\"last_msg_ns\":%llu,\"msgs_per_s\":%.1f,",
           (unsigned long long)t_first_msg, (unsigned long long)t_last_msg,
           span > 0 ? (double)messages / span : 0.0);
    printf("\"latency_samples\":%llu,\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
           "\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f},",
           (unsigned long long)latency_samples, hist_percentile(0.50), hist_percentile(0.90),
           hist_percentile(0.99), hist_percentile(0.999), (double)lat_max_ns / 1e6,
           latency_samples ? lat_sum_ns / (double)latency_samples / 1e6 : 0.0);
    qsort(open_us, (size_t)established, sizeof *open_us, cmp_u32);
    int slow_opens = 0;
    for (int i = 0; i < established; i++) slow_opens += open_us[i] >= 1000000;
#define OPEN_MS(q) (established ? open_us[(size_t)((q) * (established - 1))] / 1000.0 : 0.0)
    printf("\"open_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},\"slow_opens\":%d,",
           OPEN_MS(0.5), OPEN_MS(0.99), OPEN_MS(1.0), slow_opens);
    printf("\"start_ns\":%llu,\"open_s\":%.4f,\"opens_per_s\":%.1f,\"subscribed_ns\":%llu,",
           (unsigned long long)t_start, open_span,
           open_span > 0 ? (double)established / open_span : 0.0,
           (unsigned long long)t_last_subscribed);
    printf("\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"wall_s\":%.3f,"
           "\"cpu_during_msgs_s\":%.3f,\"busy_during_msgs\":%.3f,",
           tv_s(ru.ru_utime), tv_s(ru.ru_stime), (double)(t_end - t_start) / 1e9, cpu_msgs,
           span > 0 ? cpu_msgs / span : 0.0);
    printf("\"errors\":{\"connect\":%llu,\"upgrade\":%llu,\"reset\":%llu,\"protocol\":%llu,"
           "\"closed_by_server\":%llu,\"pusher_error\":%llu,\"subscription_error\":%llu},"
           "\"pings_answered\":%llu,\"pusher_pings_answered\":%llu,",
           (unsigned long long)err_connect, (unsigned long long)err_upgrade,
           (unsigned long long)err_reset, (unsigned long long)err_protocol,
           (unsigned long long)closed_by_server, (unsigned long long)pusher_errors,
           (unsigned long long)subscription_errors, (unsigned long long)pings_answered,
           (unsigned long long)pusher_pings_answered);
    printf("\"timed_out\":%s,\"end\":\"%s\",\"first_error\":\"", timed_out ? "true" : "false",
           reason);
    for (const char *p = first_error; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        if ((unsigned char)*p >= 0x20) putchar(*p);
    }
    printf("\"}\n");
    fflush(stdout);
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
    fprintf(stderr,
            "usage: wsload [options]\n"
            "  --host H              server address (IPv4 or name; default 127.0.0.1)\n"
            "  --port P              default 6001\n"
            "  --path PATH           default /app/bench-key?protocol=7&client=wsload&version=1.0\n"
            "  -n, --connections N   number of connections (default 1)\n"
            "  --channel NAME        every connection subscribes to NAME (broadcast)\n"
            "  --channel-prefix P    connection i subscribes to P{first-index+i} (targeted)\n"
            "  --first-index K       offset for --channel-prefix (to split across processes)\n"
            "  --expect M            user events expected per connection (0: connect only)\n"
            "  --timeout S           give up after S seconds in total (default 60)\n"
            "  --idle-timeout S      after the first event, stop when nothing arrives for S s\n"
            "  --window W            handshakes in flight at once (default 64; keep it under\n"
            "                        the server's listen backlog or SYNs are dropped: slow_opens)\n"
            "  --batch B --batch-pause S   open B connections, pause S seconds, repeat\n"
            "  --ready               print {\"ready\":true} when all are subscribed\n"
            "  --stdin-stop          also stop on a line or EOF on stdin\n"
            "  --rcvbuf BYTES        SO_RCVBUF for each socket\n"
            "  --no-verify-accept    do not check Sec-WebSocket-Accept\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    static struct option longopts[] = {
        {"host", required_argument, 0, 'h'},
        {"port", required_argument, 0, 'p'},
        {"path", required_argument, 0, 'P'},
        {"connections", required_argument, 0, 'n'},
        {"channel", required_argument, 0, 'c'},
        {"channel-prefix", required_argument, 0, 'x'},
        {"first-index", required_argument, 0, 'f'},
        {"expect", required_argument, 0, 'e'},
        {"timeout", required_argument, 0, 't'},
        {"idle-timeout", required_argument, 0, 'i'},
        {"window", required_argument, 0, 'w'},
        {"batch", required_argument, 0, 'b'},
        {"batch-pause", required_argument, 0, 'B'},
        {"ready", no_argument, 0, 'r'},
        {"stdin-stop", no_argument, 0, 's'},
        {"rcvbuf", required_argument, 0, 'R'},
        {"no-verify-accept", no_argument, 0, 'A'},
        {"help", no_argument, 0, '?'},
        {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "n:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'P': opt_path = optarg; break;
        case 'n': opt_connections = atoi(optarg); break;
        case 'c': opt_channel = optarg; break;
        case 'x': opt_prefix = optarg; break;
        case 'f': opt_first_index = atoi(optarg); break;
        case 'e': opt_expect = atol(optarg); break;
        case 't': opt_timeout = atof(optarg); break;
        case 'i': opt_idle_timeout = atof(optarg); break;
        case 'w': opt_window = atoi(optarg); break;
        case 'b': opt_batch = atoi(optarg); break;
        case 'B': opt_batch_pause = atof(optarg); break;
        case 'r': opt_ready = 1; break;
        case 's': opt_stdin_stop = 1; break;
        case 'R': opt_rcvbuf = atoi(optarg); break;
        case 'A': opt_verify_accept = 0; break;
        default: usage();
        }
    }
    if (optind != argc) usage();
    if (opt_connections < 1 || opt_connections > MAX_CONNECTIONS)
        die("--connections must be 1..%d", MAX_CONNECTIONS);
    if (!!opt_channel == !!opt_prefix) die("give exactly one of --channel and --channel-prefix");
    if (opt_window < 1) opt_window = 1;
    if (opt_port < 1 || opt_port > 65535) die("bad --port");
    if (opt_timeout <= 0) die("--timeout must be > 0");
    if (opt_path[0] != '/') die("--path must start with /");
}

static void raise_nofile(int need) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) die("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur >= (rlim_t)need) return;
    if (rl.rlim_max < (rlim_t)need) {
        struct rlimit want = {(rlim_t)need, (rlim_t)need};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) return;
        die("need %d open files but the hard limit is %llu", need,
            (unsigned long long)rl.rlim_max);
    }
    rl.rlim_cur = (rlim_t)need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) die("setrlimit: %s", strerror(errno));
}

static void resolve(void) {
    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt_port);
    if (inet_pton(AF_INET, opt_host, &server_addr.sin_addr) == 1) return;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(opt_host, NULL, &hints, &res);
    if (rc) die("cannot resolve %s: %s", opt_host, gai_strerror(rc));
    server_addr.sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(opt_connections + 64);
    resolve();
    rng_state ^= now_ns() ^ ((uint64_t)getpid() << 32);

    conns = calloc((size_t)opt_connections, sizeof *conns);
    scratch = malloc(SCRATCH_SIZE);
    hist = calloc(HIST_SIZE, sizeof *hist);
    open_us = calloc((size_t)opt_connections, sizeof *open_us);
    if (!conns || !scratch || !hist || !open_us) die("out of memory");
    for (int i = 0; i < opt_connections; i++) {
        conns[i].fd = -1;
        conns[i].index = i;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1: %s", strerror(errno));
    static struct conn stdin_marker;
    if (opt_stdin_stop) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &stdin_marker};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0) die("cannot watch stdin");
    }

    t_start = now_ns();
    t_last_activity = t_start;
    uint64_t deadline = t_start + (uint64_t)(opt_timeout * 1e9);
    struct epoll_event events[MAX_EVENTS];
    int timed_out = 0;
    const char *reason = "complete";

    for (;;) {
        uint64_t t = now_ns();
        /* open more connections while under the handshake window (and batch schedule) */
        if (opt_batch > 0 && batch_opened >= opt_batch && inflight == 0) {
            if (!batch_pause_until) batch_pause_until = t + (uint64_t)(opt_batch_pause * 1e9);
            if (t >= batch_pause_until) {
                batch_opened = 0;
                batch_pause_until = 0;
            }
        }
        while (started < opt_connections && inflight < opt_window &&
               (opt_batch <= 0 || batch_opened < opt_batch)) {
            start_connection(&conns[started]);
        }
        maybe_print_ready();

        if (settled()) {
            if (subscribed == 0) {
                reason = subscribed_ever ? "every connection closed" : "no connection subscribed";
                break;
            }
            if (opt_expect > 0 && complete >= subscribed) {
                reason = "complete";
                break;
            }
            if (opt_expect <= 0 && !opt_stdin_stop) {
                reason = "connected";
                break;
            }
        }
        if (t >= deadline) {
            timed_out = 1;
            reason = "timeout";
            break;
        }
        if (opt_idle_timeout > 0 && t_first_msg &&
            t - t_last_activity >= (uint64_t)(opt_idle_timeout * 1e9)) {
            timed_out = 1;
            reason = "idle timeout";
            break;
        }
        int wait_ms = (int)((deadline - t) / 1000000) + 1;
        if (wait_ms > 100) wait_ms = 100;
        if (opt_batch > 0 && batch_pause_until && wait_ms > 5) wait_ms = 5;
        int n = epoll_wait(epfd, events, MAX_EVENTS, wait_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        int stop = 0;
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == &stdin_marker) {
                stop = 1;
                continue;
            }
            if (c->state == ST_DEAD) continue;
            uint32_t ev = events[i].events;
            if (ev & EPOLLOUT) on_writable(c);
            if (c->state != ST_DEAD && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                if (c->state == ST_CONNECTING) on_writable(c); /* reports the connect error */
                else on_readable(c);
            }
        }
        if (stop) {
            reason = "stdin";
            break;
        }
    }
    report(timed_out, reason);
    return 0;
}
