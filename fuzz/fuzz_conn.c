/* fuzz_conn.c - stateful libFuzzer target for a client connection (conn.c, conn_handshake.c,
 * heartbeat.c and the echo, pubsub and proxy targets): the input is a program of client bytes,
 * frames, timer fires, slow or vanishing clients and backend outcomes, run in any order against
 * one real connection on a real worker. No seam in src/: a socketpair, one end handed to
 * conn_new() as an accepted plain transport, the client's end a bufferevent, a timer "fires"
 * through timer_wheel_expire() on the connection's one timer (struct conn is public), and the
 * backend is a loopback listener the input answers for (101, an HTTP status, garbage, frames,
 * close, silence).
 *
 * Checks: nothing aborts (fatalx exits, which libFuzzer reports), ASan/UBSan/LSan clean, and
 * every connection ends: once the client is gone and timers have fired, the worker has no
 * connection left. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "conn.h"
#include "gateway.h"
#include "transport.h"
#include "http.h"
#include "log.h"
#include "worker.h"
#include "ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FZ_CHECK(c)                                                                                \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_conn: check failed: %s (line %d)\n", #c, __LINE__);  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define FZ_MAX_BACKENDS 4

static struct {
	struct gateway gw;
	struct worker *w;
	int lfd; /* the backend's listener */
	int bfd[FZ_MAX_BACKENDS];
	size_t nb;
	struct bufferevent *client; /* our end of the socketpair; NULL once the client vanished */
} fz;

static const char *const fz_paths[] = {"/echo", "/ps/room1", "/p", "/nope", "/ps/bad%20x"};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	struct config *cfg = NULL;
	struct config_errors errs = {0};
	char text[2048];
	int listen_port;

	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fz.lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(fz.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fz.lfd, 64) < 0 ||
	    getsockname(fz.lfd, (struct sockaddr *)&sa, &sl) < 0) {
		perror("fuzz_conn: listen");
		exit(1);
	}
	fcntl(fz.lfd, F_SETFL, fcntl(fz.lfd, F_GETFL) | O_NONBLOCK);
	/* gateway_init binds the public listener (nothing connects to it): a free port of its
	 * own, so that several fuzz_conn processes (-fork, -jobs) can run side by side. */
	{
		struct sockaddr_in la = sa;
		socklen_t ll = sizeof(la);
		int t = socket(AF_INET, SOCK_STREAM, 0);

		la.sin_port = 0;
		if (t < 0 || bind(t, (struct sockaddr *)&la, sizeof(la)) < 0 ||
		    getsockname(t, (struct sockaddr *)&la, &ll) < 0) {
			perror("fuzz_conn: free port");
			exit(1);
		}
		listen_port = ntohs(la.sin_port);
		close(t);
	}
	/* Real timers long enough never to fire within one input: the input fires them. */
	snprintf(text, sizeof(text),
	         "[gateway]\nlisten = 127.0.0.1:%d\nworkers = 1\nlog_level = error\n"
	         "handshake_timeout = 1h\nclose_timeout = 1h\nmax_message_size = 65536\n"
	         "[heartbeat]\nping_interval = 1s\npong_timeout = 1h\nidle_timeout = 0\n"
	         "[route /echo]\ntype = echo\n"
	         "[route /ps/{room}]\ntype = pubsub\nsubscribe = room:{room}\n"
	         "publish = room:{room}\nmax_queue = 4096\n"
	         "[route /p]\ntype = proxy\nbackend = ws://127.0.0.1:%d/b\nretries = 1\n"
	         "connect_timeout = 1h\nfail_timeout = 1ms\n",
	         listen_port, ntohs(sa.sin_port));
	if (config_load_string("fuzz_conn", text, &cfg, &errs) != 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "fuzz_conn: %s\n", errs.msgs[i]);
		exit(1);
	}
	log_set_level(LOG_LVL_WARN); /* why gateway_init failed, if it does */
	if (gateway_init(&fz.gw, cfg, "fuzz_conn") != 0 || fz.gw.nworkers != 1) {
		/* libFuzzer ignores our return value: stop here rather than fuzz nothing. */
		fprintf(stderr, "fuzz_conn: gateway_init failed\n");
		exit(1);
	}
	log_set_level(LOG_LVL_ERROR);
	fz.w = fz.gw.workers[0];
	return 0;
}

static void
fz_pump(void)
{
	for (int i = 0; i < 3; i++)
		event_base_loop(fz.w->base, EVLOOP_NONBLOCK);
}

/* The connection, if it has not been closed yet (closed ones are freed by the reaper). */
static struct conn *
fz_live(struct conn *c)
{
	struct conn *it;

	LIST_FOREACH(it, &fz.w->conns, entry)
	if (it == c)
		return c;
	return NULL;
}

/* The client goes away: what it sent last goes as far as the socket takes it, then the
 * connection sees EOF (the socket closed with the bufferevent). */
static void
fz_client_gone(void)
{
	struct evbuffer *out;

	if (fz.client == NULL)
		return;
	/* A socket bufferevent's output is frozen at the front between its own writes. */
	out = bufferevent_get_output(fz.client);
	evbuffer_unfreeze(out, 1);
	(void)evbuffer_write(out, bufferevent_getfd(fz.client));
	bufferevent_free(fz.client);
	fz.client = NULL;
}

static void
fz_client_send(const void *p, size_t n)
{
	if (fz.client != NULL)
		bufferevent_write(fz.client, p, n);
}

static void
fz_client_frame(int fin, unsigned opcode, const uint8_t *payload, size_t n)
{
	uint8_t hdr[WS_FRAME_HDR_MAX], key[4] = {1, 2, 3, 4}, *m;
	size_t h = ws_frame_encode(hdr, fin, 0, opcode, n, key);

	if ((m = malloc(n + 1)) == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		m[i] = payload[i] ^ key[i & 3];
	fz_client_send(hdr, h);
	fz_client_send(m, n);
	free(m);
}

static void
fz_accept_backends(void)
{
	int fd;

	while (fz.nb < FZ_MAX_BACKENDS && (fd = accept(fz.lfd, NULL, NULL)) >= 0) {
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		fz.bfd[fz.nb++] = fd;
	}
}

/* The backend reads the upgrade request and answers 101 with the right accept. */
static void
fz_backend_101(int fd, const char *extra)
{
	char buf[8192], accept[29], out[512];
	struct http_request req;
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK);
	int len;

	if (n <= 0 || http_parse_request(buf, (size_t)n, &req) != HTTP_PARSE_OK)
		return;
	(void)!recv(fd, buf, req.header_len, 0);
	http_ws_accept(req.key.p, req.key.n, accept);
	len = snprintf(out, sizeof(out),
	               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
	               accept, extra);
	(void)!send(fd, out, (size_t)len, MSG_NOSIGNAL);
}

static void
fz_backend_close(size_t i, int rst)
{
	struct linger lg = {1, 0};

	if (fz.bfd[i] < 0)
		return;
	if (rst)
		setsockopt(fz.bfd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fz.bfd[i]);
	fz.bfd[i] = -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct transport *tr;
	struct sockaddr_in peer;
	struct conn *c;
	uint8_t payload[512];
	size_t i = 0;
	int rounds, sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		return 0;
	if ((fz.client = bufferevent_socket_new(fz.w->base, sv[1], BEV_OPT_CLOSE_ON_FREE)) ==
	    NULL) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	if ((tr = transport_server_new(fz.w->base, sv[0], NULL)) == NULL) {
		bufferevent_free(fz.client);
		fz.client = NULL;
		return 0;
	}
	memset(&peer, 0, sizeof(peer));
	peer.sin_family = AF_INET;
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	peer.sin_port = htons(40000);
	fz.nb = 0;
	bufferevent_enable(fz.client, EV_READ | EV_WRITE);
	c = conn_new(&fz.w->env, tr, (struct sockaddr *)&peer, sizeof(peer));
	FZ_CHECK(c != NULL);

	while (i < size) {
		uint8_t op = data[i++];
		uint8_t x = i < size ? data[i++] : 0;
		uint8_t y = i < size ? data[i++] : 0;
		size_t bi = fz.nb > 0 ? x % fz.nb : 0;
		char req[512];
		int n;

		for (size_t k = 0; k < sizeof(payload); k++)
			payload[k] = (uint8_t)('a' + (k + y) % 26);
		switch (op % 16) {
		case 0: /* a well-formed upgrade, maybe cut short */
			n = snprintf(
			    req, sizeof(req),
			    "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
			    "Connection: Upgrade\r\nSec-WebSocket-Key: "
			    "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
			    fz_paths[x % 5]);
			fz_client_send(req, y & 0x80 ? (size_t)n * (y & 0x7f) / 128 : (size_t)n);
			break;
		case 1: { /* raw bytes from the input */
			size_t len = y < size - i ? y : size - i;

			fz_client_send(data + i, len);
			i += len;
			break;
		}
		case 2: /* a masked frame: opcode, FIN and length from the input */
			fz_client_frame(x & 0x80, x & 0x0f, payload, y);
			break;
		case 3: /* the connection's timer fires now, whatever its deadline */
			if (fz_live(c))
				timer_wheel_expire(fz.w->wheel, &c->timer);
			break;
		case 4:
			fz_pump();
			break;
		case 5: /* the client stops reading (its window fills: backpressure) */
			if (fz.client != NULL) {
				bufferevent_setwatermark(fz.client, EV_READ, 0, (size_t)y * 64 + 1);
				bufferevent_disable(fz.client, EV_READ);
			}
			break;
		case 6: /* reads again, everything */
			if (fz.client != NULL) {
				bufferevent_setwatermark(fz.client, EV_READ, 0, 0);
				bufferevent_enable(fz.client, EV_READ);
				evbuffer_drain(bufferevent_get_input(fz.client), (size_t)-1);
			}
			break;
		case 7: /* the client vanishes (EOF at the connection) */
			if ((x & 7) == 0)
				fz_client_gone();
			break;
		case 8: /* the backend takes the connection the proxy is opening (if any: a
		         * loopback connect completes within a few loop turns) */
			for (int t = 0; t < 20 && fz.nb == 0; t++) {
				struct pollfd pfd = {fz.lfd, POLLIN, 0};

				fz_pump();
				if (poll(&pfd, 1, 1) == 1)
					fz_accept_backends();
			}
			break;
		case 9:
			if (fz.nb > 0 && fz.bfd[bi] >= 0)
				fz_backend_101(fz.bfd[bi],
				               y & 1 ? "Sec-WebSocket-Protocol: x\r\n" : "");
			break;
		case 10: { /* the backend refuses, or answers nonsense */
			static const char *const ans[] = {
			    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
			    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
			    "HTTP/1.1 101 Switching Protocols\r\n\r\n", "garbage\r\n\r\n",
			    "HTTP/1.1 200 OK\r\n"};

			if (fz.nb > 0 && fz.bfd[bi] >= 0)
				(void)!send(fz.bfd[bi], ans[y % 5], strlen(ans[y % 5]),
				            MSG_NOSIGNAL);
			break;
		}
		case 11:
			if (fz.nb > 0)
				fz_backend_close(bi, y & 1);
			break;
		case 12: /* the backend sends a frame (unmasked, as a server does) */
			if (fz.nb > 0 && fz.bfd[bi] >= 0) {
				uint8_t hdr[WS_FRAME_HDR_MAX];
				size_t h = ws_frame_encode(hdr, 1, 0, x & 0x0f, y, NULL);

				(void)!send(fz.bfd[bi], hdr, h, MSG_NOSIGNAL);
				(void)!send(fz.bfd[bi], payload, y, MSG_NOSIGNAL);
			}
			break;
		case 13: /* the backend reads what reached it */
			if (fz.nb > 0 && fz.bfd[bi] >= 0) {
				char sink[16384];

				while (recv(fz.bfd[bi], sink, sizeof(sink), 0) > 0)
					;
			}
			break;
		case 14: /* a close frame from the client */
			fz_client_frame(1, WS_OP_CLOSE, (const uint8_t *)"\x03\xe8", y & 1 ? 2 : 0);
			break;
		default:
			fz_pump();
			fz_accept_backends();
			break;
		}
	}

	/* The end: the client and the backends go away and timers run out; the connection must
	 * end, and the worker be left with nothing. */
	fz_pump();
	fz_client_gone();
	fz_accept_backends();
	for (size_t k = 0; k < fz.nb; k++)
		fz_backend_close(k, 1);
	for (rounds = 0; rounds < 50 && fz.w->nconns > 0; rounds++) {
		fz_pump();
		if (fz_live(c))
			timer_wheel_expire(fz.w->wheel, &c->timer);
		fz_accept_backends();
		for (size_t k = 0; k < fz.nb; k++)
			fz_backend_close(k, 1);
		fz.nb = 0;
	}
	fz_pump();
	FZ_CHECK(fz.w->nconns == 0);
	return 0;
}
