/* epoll_echo.c - the ceiling for wsgate's echo and fan-out benchmarks: a bare single-threaded
 * epoll WebSocket server with a minimal handshake and framing only, no validation.
 *
 * usage: epoll_echo [port] [echo|broadcast|ping SECONDS]
 *   echo (default): every data frame comes back to its sender.
 *   broadcast: every data frame is framed once and written to every other open connection, one
 *   write() per subscriber as it comes (what a plain C fan-out loop does; bench/run-fanout.sh
 *   drives it with psbench's publisher). Pings are answered, nothing is echoed.
 *   ping: a heartbeat server for idle connections (bench/run-tls-idle-memory.sh's baseline):
 *   every connection gets an empty ping SECONDS after it opened and every SECONDS after that,
 *   one write() each; pongs are read and dropped, data frames echoed. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define IOBUF (256 * 1024)
#define MAX_FRAME (16u * 1024 * 1024) /* a frame larger than this closes the connection */

struct conn {
	int fd;
	bool open;                /* handshake done */
	bool dead;                /* a broadcast write failed: freed after the fan-out loop */
	struct conn *prev, *next; /* every open connection (broadcast mode) */
	bool want_out;            /* EPOLLOUT registered: output pending, reading paused */
	uint8_t *in; /* unparsed input carried between reads (a partial frame or request) */
	size_t in_len, in_cap;
	uint8_t *out; /* output the kernel did not take yet */
	size_t out_off, out_len, out_cap;
	struct conn *ping_prev, *ping_next; /* ping mode: open connections by next ping time */
	uint64_t ping_due_ms;
};

static int g_ep;
static uint8_t g_rbuf[IOBUF];
static uint8_t g_wbuf[IOBUF];
static volatile sig_atomic_t g_stop;
static bool g_broadcast;
static struct conn *g_open; /* open connections, newest first (broadcast mode) */
static uint64_t g_ping_ms;  /* ping mode's interval; 0 otherwise */
/* Ping mode: every interval is the same, so connections in the order they opened are in the
 * order their pings are due: a FIFO, each ping moving its connection to the tail. */
static struct conn *g_ping_head, *g_ping_tail;

static uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
ping_unlink(struct conn *c)
{
	if (c->ping_prev != NULL)
		c->ping_prev->ping_next = c->ping_next;
	else if (g_ping_head == c)
		g_ping_head = c->ping_next;
	if (c->ping_next != NULL)
		c->ping_next->ping_prev = c->ping_prev;
	else if (g_ping_tail == c)
		g_ping_tail = c->ping_prev;
	c->ping_prev = c->ping_next = NULL;
}

static void
ping_append(struct conn *c, uint64_t due)
{
	c->ping_due_ms = due;
	c->ping_next = NULL;
	c->ping_prev = g_ping_tail;
	if (g_ping_tail != NULL)
		g_ping_tail->ping_next = c;
	else
		g_ping_head = c;
	g_ping_tail = c;
}

static void
conn_free(struct conn *c)
{
	if (c->open && g_ping_ms > 0)
		ping_unlink(c);
	if (c->open) {
		if (c->prev != NULL)
			c->prev->next = c->next;
		else
			g_open = c->next;
		if (c->next != NULL)
			c->next->prev = c->prev;
	}
	epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

static bool
buf_append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *p, size_t n)
{
	if (*len + n > *cap) {
		size_t nc = *cap ? *cap : 4096;
		while (nc < *len + n)
			nc *= 2;
		uint8_t *nb = realloc(*buf, nc);
		if (nb == NULL)
			return false;
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	return true;
}

/* Writes p[0..n) now, keeping what the kernel refuses; false on a fatal error. */
static bool
conn_write(struct conn *c, const uint8_t *p, size_t n)
{
	if (c->out_len == c->out_off) {
		while (n > 0) {
			ssize_t w = write(c->fd, p, n);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					break;
				return false;
			}
			p += w;
			n -= (size_t)w;
		}
		c->out_off = c->out_len = 0;
	}
	if (n == 0)
		return true;
	if (!buf_append(&c->out, &c->out_len, &c->out_cap, p, n))
		return false;
	if (!c->want_out) {
		struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
		epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e);
		c->want_out = true;
	}
	return true;
}

static bool
conn_flush_out(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN;
		}
		c->out_off += (size_t)w;
	}
	c->out_off = c->out_len = 0;
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
	epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e);
	c->want_out = false;
	return true;
}

/* Returns bytes consumed from p, or -1 to close. */
static ssize_t
handshake(struct conn *c, const uint8_t *p, size_t n)
{
	const uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
	if (end == NULL)
		return n > 8192 ? -1 : 0;
	size_t hlen = (size_t)(end - p) + 4;
	const char *key = NULL;
	size_t klen = 0;
	for (const uint8_t *l = p; l < end;) {
		const uint8_t *nl = memmem(l, (size_t)(end + 2 - l), "\r\n", 2);
		if (nl == NULL)
			break;
		if ((size_t)(nl - l) > 18 &&
		    strncasecmp((const char *)l, "Sec-WebSocket-Key:", 18) == 0) {
			key = (const char *)l + 18;
			while (*key == ' ')
				key++;
			klen = (size_t)((const char *)nl - key);
			while (klen > 0 && key[klen - 1] == ' ')
				klen--;
		}
		l = nl + 2;
	}
	if (key == NULL || klen > 64)
		return -1;
	char src[64 + sizeof(WS_GUID)];
	memcpy(src, key, klen);
	memcpy(src + klen, WS_GUID, sizeof(WS_GUID) - 1);
	uint8_t md[SHA_DIGEST_LENGTH];
	SHA1((const unsigned char *)src, klen + sizeof(WS_GUID) - 1, md);
	char acc[32];
	EVP_EncodeBlock((unsigned char *)acc, md, sizeof(md));
	char resp[256];
	int rl = snprintf(resp, sizeof(resp),
	                  "HTTP/1.1 101 Switching Protocols\r\n"
	                  "Upgrade: websocket\r\n"
	                  "Connection: Upgrade\r\n"
	                  "Sec-WebSocket-Accept: %s\r\n\r\n",
	                  acc);
	if (!conn_write(c, (const uint8_t *)resp, (size_t)rl))
		return -1;
	c->open = true;
	c->next = g_open;
	if (g_open != NULL)
		g_open->prev = c;
	g_open = c;
	if (g_ping_ms > 0)
		ping_append(c, now_ms() + g_ping_ms);
	return (ssize_t)hlen;
}

static void
unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mk[4])
{
	uint32_t m32;
	memcpy(&m32, mk, 4);
	uint64_t m64 = (uint64_t)m32 << 32 | m32;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t v;
		memcpy(&v, src + i, 8);
		v ^= m64;
		memcpy(dst + i, &v, 8);
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ mk[i & 3];
}

/* Writes one frame to every open connection but the sender. A subscriber whose write fails is
 * shut down, not freed: its EOF comes back through epoll and conn_read frees it (this epoll
 * batch may still hold its pointer). */
static void
broadcast(struct conn *from, const uint8_t *frame, size_t n)
{
	for (struct conn *s = g_open; s != NULL; s = s->next) {
		if (s == from || s->dead)
			continue;
		if (!conn_write(s, frame, n)) {
			s->dead = true;
			shutdown(s->fd, SHUT_RDWR);
		}
	}
}

/* Parses complete masked frames from p, echoes each unmasked; returns bytes consumed or -1. */
static ssize_t
frames(struct conn *c, const uint8_t *p, size_t n)
{
	size_t off = 0, wl = 0;
	bool close_after = false;
	while (n - off >= 2) {
		const uint8_t *f = p + off;
		uint64_t len = f[1] & 0x7f;
		size_t h = 2;
		if (len == 126) {
			if (n - off < 4)
				break;
			len = (uint64_t)f[2] << 8 | f[3];
			h = 4;
		} else if (len == 127) {
			if (n - off < 10)
				break;
			len = 0;
			for (int k = 0; k < 8; k++)
				len = len << 8 | f[2 + k];
			h = 10;
		}
		if (!(f[1] & 0x80) || len > MAX_FRAME)
			return -1; /* client frames must be masked */
		if (n - off < h + 4 + len)
			break;
		unsigned op = f[0] & 0x0f;
		if (g_ping_ms > 0 && op == 10) {
			off += h + 4 + (size_t)len; /* a pong: the heartbeat's answer, dropped */
			continue;
		}
		size_t oh = len < 126 ? 2 : len < 65536 ? 4 : 10;
		if (wl + oh + len > sizeof(g_wbuf)) {
			if (!conn_write(c, g_wbuf, wl))
				return -1;
			wl = 0;
		}
		uint8_t *o = g_wbuf;
		uint8_t *tmp = NULL;
		if (oh + len > sizeof(g_wbuf)) {
			tmp = malloc(oh + len);
			if (tmp == NULL)
				return -1;
			o = tmp;
		} else {
			o = g_wbuf + wl;
		}
		o[0] = (uint8_t)(0x80 & f[0]) | (uint8_t)(op == 9 ? 10 : op); /* ping -> pong */
		if (oh == 2) {
			o[1] = (uint8_t)len;
		} else if (oh == 4) {
			o[1] = 126;
			o[2] = (uint8_t)(len >> 8);
			o[3] = (uint8_t)len;
		} else {
			o[1] = 127;
			for (int k = 0; k < 8; k++)
				o[2 + k] = (uint8_t)(len >> (56 - 8 * k));
		}
		unmask(o + oh, f + h + 4, (size_t)len, f + h);
		if (g_broadcast && (op == 1 || op == 2 || op == 0)) {
			broadcast(c, o, oh + (size_t)len);
			free(tmp);
			off += h + 4 + (size_t)len;
			continue;
		}
		if (tmp != NULL) {
			bool ok = conn_write(c, tmp, oh + len);
			free(tmp);
			if (!ok)
				return -1;
		} else {
			wl += oh + len;
		}
		off += h + 4 + (size_t)len;
		if (op == 8) {
			close_after = true; /* the close frame was echoed: done */
			break;
		}
	}
	if (wl > 0 && !conn_write(c, g_wbuf, wl))
		return -1;
	if (close_after)
		return -1;
	return (ssize_t)off;
}

static bool
consume(struct conn *c, const uint8_t *p, size_t n, size_t *used)
{
	size_t off = 0;
	if (!c->open) {
		ssize_t r = handshake(c, p, n);
		if (r < 0)
			return false;
		off = (size_t)r;
		if (!c->open) {
			*used = 0;
			return true;
		}
	}
	ssize_t r = frames(c, p + off, n - off);
	if (r < 0)
		return false;
	*used = off + (size_t)r;
	return true;
}

static void
conn_read(struct conn *c)
{
	ssize_t n = read(c->fd, g_rbuf, sizeof(g_rbuf));
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_free(c);
		return;
	}
	size_t used;
	if (c->in_len == 0) {
		/* fast path: parse straight from the read buffer */
		if (!consume(c, g_rbuf, (size_t)n, &used)) {
			conn_free(c);
			return;
		}
		if (used < (size_t)n &&
		    !buf_append(&c->in, &c->in_len, &c->in_cap, g_rbuf + used, (size_t)n - used)) {
			conn_free(c);
			return;
		}
		return;
	}
	if (!buf_append(&c->in, &c->in_len, &c->in_cap, g_rbuf, (size_t)n) ||
	    !consume(c, c->in, c->in_len, &used)) {
		conn_free(c);
		return;
	}
	memmove(c->in, c->in + used, c->in_len - used);
	c->in_len -= used;
}

/* Ping mode: the pings now due, each connection's next one an interval after this one was due
 * (a late loop turn does not drift the schedule). A failed write shuts the connection down;
 * its EOF frees it, as in broadcast(). */
static void
pings_due(void)
{
	static const uint8_t ping[2] = {0x89, 0x00};
	uint64_t now = now_ms();

	while (g_ping_head != NULL && g_ping_head->ping_due_ms <= now) {
		struct conn *c = g_ping_head;
		ping_unlink(c);
		ping_append(c, c->ping_due_ms + g_ping_ms);
		if (!c->dead && !conn_write(c, ping, sizeof(ping))) {
			c->dead = true;
			shutdown(c->fd, SHUT_RDWR);
		}
	}
}

/* epoll_wait's timeout: 500 ms, or until the next ping is due. */
static int
wait_ms(void)
{
	uint64_t now;

	if (g_ping_head == NULL)
		return 500;
	now = now_ms();
	if (g_ping_head->ping_due_ms <= now)
		return 0;
	return g_ping_head->ping_due_ms - now < 500 ? (int)(g_ping_head->ping_due_ms - now) : 500;
}

static void
on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

int
main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 9002;
	g_broadcast = argc > 2 && strcmp(argv[2], "broadcast") == 0;
	if (argc > 3 && strcmp(argv[2], "ping") == 0)
		g_ping_ms = (uint64_t)atoi(argv[3]) * 1000u;
	if (argc > 2 && strcmp(argv[2], "ping") == 0 && g_ping_ms == 0) {
		fprintf(stderr, "usage: epoll_echo [port] [echo|broadcast|ping SECONDS]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) == -1 || listen(ls, 4096) == -1) {
		perror("epoll_echo: bind/listen");
		return 1;
	}
	g_ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(g_ep, EPOLL_CTL_ADD, ls, &le);
	fprintf(stderr, "epoll_echo: %s, listening on 127.0.0.1:%d\n",
	        g_broadcast     ? "broadcast"
	        : g_ping_ms > 0 ? "ping"
	                        : "echo",
	        port);
	struct epoll_event evs[512];
	while (!g_stop) {
		int n = epoll_wait(g_ep, evs, 512, wait_ms());
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == NULL) {
				for (;;) {
					int fd =
					    accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd == -1)
						break; /* EAGAIN, or EMFILE: try again on the next
						          wakeup */
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					c = calloc(1, sizeof(*c));
					if (c == NULL) {
						close(fd);
						continue;
					}
					c->fd = fd;
					struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
					epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &e);
				}
				continue;
			}
			if (evs[i].events & EPOLLOUT) {
				if (!conn_flush_out(c)) {
					conn_free(c);
					continue;
				}
				if (c->want_out)
					continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				if (!c->want_out || c->dead)
					conn_read(c);
		}
		if (g_ping_ms > 0)
			pings_due();
	}
	return 0;
}
