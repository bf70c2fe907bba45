/* check_ws_parser.c - unit tests for ws_parser.c: one table row per receive-side rule, each
 * vector fed whole, byte by byte and in odd chunks, with the same events required every time. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "ws_frame.h"
#include "ws_parser.h"

#define FIN 0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10
#define CONT WS_OP_CONT
#define TEXT WS_OP_TEXT
#define BIN WS_OP_BINARY
#define CLOSE WS_OP_CLOSE
#define PING WS_OP_PING
#define PONG WS_OP_PONG

#define MAXF 8    /* frames per row */
#define MAXE 8    /* expected events per row */
#define MAXREC 64 /* recorded events per run, after merging data chunks */

/*
 * For per-byte loops: Check's ck_assert writes a mark point down a pipe on every call even
 * when it passes, which made the byte-by-byte runs take minutes; this only calls on failure.
 */
#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #cond);                      \
	} while (0)

static const uint8_t test_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/*
 * A frame to put on the wire, masked with test_key unless unmasked.  b0 carries 0x100 so the
 * all-zero entry can end the list (a non-final continuation frame has b0 == 0).
 */
struct tframe {
	unsigned b0;    /* 0x100 | FIN | RSVn | opcode */
	const char *pl; /* payload; NULL: len bytes of the fill pattern */
	size_t len;
	int unmasked;
	size_t cut;         /* payload bytes left off the end: a partly received frame */
	const uint8_t *raw; /* instead of all the above: these bytes verbatim */
	size_t rawlen;
};

#define FR(b0_, s)                                                                                 \
	{                                                                                          \
		.b0 = 0x100 | (b0_), .pl = (s), .len = sizeof(s) - 1                               \
	}
#define FILL(b0_, n)                                                                               \
	{                                                                                          \
		.b0 = 0x100 | (b0_), .len = (n)                                                    \
	}
#define UNMASKED(b0_, s)                                                                           \
	{                                                                                          \
		.b0 = 0x100 | (b0_), .pl = (s), .len = sizeof(s) - 1, .unmasked = 1                \
	}
#define CUT(b0_, s, n)                                                                             \
	{                                                                                          \
		.b0 = 0x100 | (b0_), .pl = (s), .len = sizeof(s) - 1, .cut = (n)                   \
	}
#define HDR_ONLY(b0_, n)                                                                           \
	{                                                                                          \
		.b0 = 0x100 | (b0_), .len = (n), .cut = (n)                                        \
	}
#define RAW(s)                                                                                     \
	{                                                                                          \
		.b0 = 0x100, .raw = (const uint8_t *)(s), .rawlen = sizeof(s) - 1                  \
	}

/* An expected event; data NULL means len bytes of the fill pattern. */
struct texp {
	enum ws_ev_type type;
	uint8_t op, first, last;
	const char *data;
	size_t len;
	uint16_t code;
};

#define DATA(op, f, l, s)                                                                          \
	{                                                                                          \
		WS_EV_DATA, op, f, l, s, sizeof(s) - 1, 0                                          \
	}
#define DATAN(op, n)                                                                               \
	{                                                                                          \
		WS_EV_DATA, op, 1, 1, NULL, n, 0                                                   \
	}
#define EPING(s)                                                                                   \
	{                                                                                          \
		WS_EV_PING, 0, 0, 0, s, sizeof(s) - 1, 0                                           \
	}
#define EPINGN(n)                                                                                  \
	{                                                                                          \
		WS_EV_PING, 0, 0, 0, NULL, n, 0                                                    \
	}
#define EPONG(s)                                                                                   \
	{                                                                                          \
		WS_EV_PONG, 0, 0, 0, s, sizeof(s) - 1, 0                                           \
	}
#define ECLOSE(c, s)                                                                               \
	{                                                                                          \
		WS_EV_CLOSE, 0, 0, 0, s, sizeof(s) - 1, c                                          \
	}
#define EERR(c)                                                                                    \
	{                                                                                          \
		WS_EV_ERROR, 0, 0, 0, NULL, 0, c                                                   \
	}

struct prow {
	const char *name;
	uint64_t max; /* max_message */
	int client;   /* parse server frames: no mask required */
	unsigned rsv_allowed;
	struct tframe f[MAXF];
	struct texp e[MAXE];
};

/* One recorded event; consecutive data chunks of one message are merged into one record. */
struct rec {
	enum ws_ev_type type;
	uint8_t op, first, last;
	uint8_t *data;
	size_t len;
	size_t cap; /* allocated for data */
	uint64_t frame_left;
	uint16_t code;
	const char *reason;
};

struct recs {
	struct rec r[MAXREC];
	size_t n;
	size_t nraw; /* events before merging */
};

static uint8_t
fill_byte(size_t i)
{
	return 'a' + i % 26;
}

/* The wire bytes of a row's frames; *np gets the length. */
static uint8_t *
build(const struct tframe *f, size_t *np)
{
	uint8_t *v, *pl;
	size_t cap = 0, n = 0, i, k, sent;

	for (i = 0; i < MAXF && f[i].b0 != 0; i++)
		cap += f[i].raw != NULL ? f[i].rawlen : WS_FRAME_HDR_MAX + f[i].len;
	v = malloc(cap + 1);
	ck_assert_ptr_nonnull(v);

	for (i = 0; i < MAXF && f[i].b0 != 0; i++) {
		if (f[i].raw != NULL) {
			memcpy(v + n, f[i].raw, f[i].rawlen);
			n += f[i].rawlen;
			continue;
		}
		n += ws_frame_encode(v + n, f[i].b0 & FIN, (f[i].b0 >> 4) & 7, f[i].b0 & 0xf,
		                     f[i].len, f[i].unmasked ? NULL : test_key);
		sent = f[i].len - f[i].cut;
		pl = v + n;
		for (k = 0; k < sent; k++)
			pl[k] = f[i].pl != NULL ? (uint8_t)f[i].pl[k] : fill_byte(k);
		/* Masked here byte by byte, independently of ws_mask. */
		if (!f[i].unmasked)
			for (k = 0; k < sent; k++)
				pl[k] ^= test_key[k & 3];
		n += sent;
	}
	*np = n;
	return v;
}

static void
record(struct recs *rs, const struct ws_event *ev)
{
	struct rec *prev = rs->n > 0 ? &rs->r[rs->n - 1] : NULL;
	struct rec *r;

	rs->nraw++;
	if (ev->type == WS_EV_DATA && prev != NULL && prev->type == WS_EV_DATA && !prev->last &&
	    !ev->first && prev->op == ev->opcode) {
		/* Doubling: byte-by-byte runs over 64 KiB payloads must stay linear. */
		if (prev->len + ev->len > prev->cap) {
			while (prev->len + ev->len > prev->cap)
				prev->cap = prev->cap * 2 + 64;
			prev->data = realloc(prev->data, prev->cap);
			REQUIRE(prev->data != NULL);
		}
		memcpy(prev->data + prev->len, ev->data, ev->len);
		prev->len += ev->len;
		prev->last = ev->last;
		prev->frame_left = ev->frame_left;
		return;
	}
	REQUIRE(rs->n < MAXREC);
	r = &rs->r[rs->n++];
	r->type = ev->type;
	r->op = ev->opcode;
	r->first = ev->first;
	r->last = ev->last;
	r->len = ev->len;
	r->cap = ev->len + 1;
	r->data = malloc(r->cap);
	REQUIRE(r->data != NULL);
	if (ev->len > 0)
		memcpy(r->data, ev->data, ev->len);
	r->frame_left = ev->frame_left;
	r->code = ev->close_code;
	r->reason = ev->reason;
}

static void
recs_free(struct recs *rs)
{
	size_t i;

	for (i = 0; i < rs->n; i++)
		free(rs->r[i].data);
	rs->n = 0;
}

static void
row_parser(const struct prow *row, struct ws_parser *p)
{
	ws_parser_init(p, row->max, !row->client);
	p->rsv_allowed = row->rsv_allowed;
}

/*
 * Feeds v[0..n) as a peer's bytes arriving `chunk` at a time, the way a connection would:
 * each read is appended to what the parser left unconsumed and fed until WS_EV_NONE.  Each
 * call gets an exactly sized heap copy so ASan catches a read past n, and the parser's
 * promises are checked on every event.  Stops at the first error.
 */
static void
feed_chunks(const struct prow *row, const uint8_t *v, size_t n, size_t chunk, struct recs *rs)
{
	struct ws_parser p;
	struct ws_event ev, ev2;
	enum ws_ev_type t;
	uint8_t *win, again[] = {0x81, 0x80, 1, 2, 3, 4};
	size_t pos = 0, end = 0, used, wn;

	row_parser(row, &p);
	memset(rs, 0, sizeof(*rs));
	while (end < n) {
		end = n - end < chunk ? n : end + chunk;
		while (pos < end) {
			wn = end - pos;
			win = malloc(wn);
			REQUIRE(win != NULL);
			memcpy(win, v + pos, wn);
			used = (size_t)-1;
			t = ws_parser_feed(&p, win, wn, &used, &ev);
			REQUIRE(t == ev.type);
			REQUIRE(used <= wn);
			if (t == WS_EV_NONE)
				REQUIRE(used == wn);
			if (t == WS_EV_DATA) {
				/* Zero copy: the chunk lies in what this call consumed. */
				REQUIRE(ev.data >= win && ev.data + ev.len <= win + used);
				REQUIRE(ev.opcode == TEXT || ev.opcode == BIN);
				REQUIRE(!ev.last || ev.frame_left == 0);
			}
			if (t != WS_EV_NONE)
				record(rs, &ev);
			free(win);
			pos += used;
			if (t == WS_EV_ERROR) {
				ck_assert_ptr_nonnull(ev.reason);
				ck_assert_int_eq(p.state, WS_PS_FAILED);
				/* Failed is sticky: nothing consumed, the same error again. */
				used = 99;
				ck_assert_int_eq(
				    ws_parser_feed(&p, again, sizeof(again), &used, &ev2),
				    WS_EV_ERROR);
				ck_assert_uint_eq(used, 0);
				ck_assert_uint_eq(ev2.close_code, ev.close_code);
				ck_assert_str_eq(ev2.reason, ev.reason);
				ws_parser_free(&p);
				return;
			}
			if (t == WS_EV_NONE)
				break;
		}
	}
	ws_parser_free(&p);
}

static void
check_expected(const struct prow *row, const struct recs *rs)
{
	const struct texp *e;
	const struct rec *r;
	size_t i, k, ne;

	for (ne = 0; ne < MAXE && row->e[ne].type != WS_EV_NONE; ne++)
		;
	ck_assert_msg(rs->n == ne, "%s: %zu events, want %zu (first: type %d code %u)", row->name,
	              rs->n, ne, rs->n ? (int)rs->r[0].type : -1, rs->n ? rs->r[0].code : 0);
	for (i = 0; i < ne; i++) {
		e = &row->e[i];
		r = &rs->r[i];
		ck_assert_msg(r->type == e->type, "%s: event %zu type %d want %d (code %u %s)",
		              row->name, i, r->type, e->type, r->code, r->reason ? r->reason : "");
		if (e->type == WS_EV_ERROR) {
			ck_assert_msg(r->code == e->code, "%s: error %u (%s), want %u", row->name,
			              r->code, r->reason, e->code);
			continue;
		}
		if (e->type == WS_EV_DATA) {
			ck_assert_msg(r->op == e->op, "%s: event %zu opcode", row->name, i);
			ck_assert_msg(r->first == e->first, "%s: event %zu first", row->name, i);
			ck_assert_msg(r->last == e->last, "%s: event %zu last", row->name, i);
		}
		if (e->type == WS_EV_CLOSE)
			ck_assert_msg(r->code == e->code, "%s: close code %u", row->name, r->code);
		ck_assert_msg(r->len == e->len, "%s: event %zu len %zu want %zu", row->name, i,
		              r->len, e->len);
		for (k = 0; k < e->len; k++)
			if (r->data[k] != (e->data != NULL ? (uint8_t)e->data[k] : fill_byte(k)))
				ck_abort_msg("%s: event %zu byte %zu", row->name, i, k);
	}
}

/*
 * Whole versus chunked: the same records, except that data delivered for a text message
 * just before its UTF-8 error differs by nature (fed byte by byte, the valid bytes before the
 * bad one are handed out first), so a data record right before an error is left out.
 */
static int
rec_skipped(const struct recs *rs, size_t i)
{
	return rs->r[i].type == WS_EV_DATA && i + 1 < rs->n && rs->r[i + 1].type == WS_EV_ERROR;
}

static void
check_same(const struct prow *row, size_t chunk, const struct recs *a, const struct recs *b)
{
	size_t i = 0, j = 0;

	for (;;) {
		while (i < a->n && rec_skipped(a, i))
			i++;
		while (j < b->n && rec_skipped(b, j))
			j++;
		if (i == a->n || j == b->n)
			break;
		ck_assert_msg(a->r[i].type == b->r[j].type, "%s chunk %zu: event %zu type",
		              row->name, chunk, i);
		ck_assert_msg(a->r[i].op == b->r[j].op && a->r[i].first == b->r[j].first &&
		                  a->r[i].last == b->r[j].last && a->r[i].code == b->r[j].code &&
		                  a->r[i].frame_left == b->r[j].frame_left,
		              "%s chunk %zu: event %zu fields", row->name, chunk, i);
		ck_assert_msg(a->r[i].len == b->r[j].len &&
		                  memcmp(a->r[i].data, b->r[j].data, a->r[i].len) == 0,
		              "%s chunk %zu: event %zu data", row->name, chunk, i);
		i++;
		j++;
	}
	ck_assert_msg(i == a->n && j == b->n, "%s chunk %zu: %zu vs %zu events", row->name, chunk,
	              a->n, b->n);
}

static void
run_row(const struct prow *row)
{
	static const size_t chunks[] = {1, 2, 3, 5, 7, 13, 64};
	struct recs *whole, *part;
	uint8_t *v;
	size_t n, i;

	whole = calloc(1, sizeof(*whole));
	part = calloc(1, sizeof(*part));
	ck_assert(whole != NULL && part != NULL);
	v = build(row->f, &n);

	feed_chunks(row, v, n, n == 0 ? 1 : n, whole);
	check_expected(row, whole);
	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		feed_chunks(row, v, n, chunks[i], part);
		check_same(row, chunks[i], whole, part);
		recs_free(part);
	}

	recs_free(whole);
	free(whole);
	free(part);
	free(v);
}

#define UTF8_SMILE "\xf0\x9f\x98\x80" /* U+1F600, 4 bytes */
#define KEY "\x37\xfa\x21\x3d"

static const struct prow rows[] = {
    /* lengths: 7-, 16- and 64-bit forms */
    {"text 0 bytes", .f = {FR(FIN | TEXT, "")}, .e = {DATA(TEXT, 1, 1, "")}},
    {"binary 125", .f = {FILL(FIN | BIN, 125)}, .e = {DATAN(BIN, 125)}},
    {"binary 126", .f = {FILL(FIN | BIN, 126)}, .e = {DATAN(BIN, 126)}},
    {"binary 65535", .f = {FILL(FIN | BIN, 65535)}, .e = {DATAN(BIN, 65535)}},
    {"binary 65536", .f = {FILL(FIN | BIN, 65536)}, .e = {DATAN(BIN, 65536)}},
    {"text 65536", .f = {FILL(FIN | TEXT, 65536)}, .e = {DATAN(TEXT, 65536)}},
    {"RFC 6455 masked Hello", .f = {RAW("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")},
     .e = {DATA(TEXT, 1, 1, "Hello")}},
    {"two messages in one read", .f = {FR(FIN | TEXT, "ab"), FR(FIN | BIN, "cd")},
     .e = {DATA(TEXT, 1, 1, "ab"), DATA(BIN, 1, 1, "cd")}},
    {"16-bit form for a 5-byte payload", .f = {RAW("\x82\xfe\x00\x05" KEY "abcde")},
     .e = {EERR(1002)}},
    {"64-bit form for 65535", .f = {RAW("\x82\xff\0\0\0\0\0\0\xff\xff" KEY)}, .e = {EERR(1002)}},
    {"64-bit length with the top bit set", .f = {RAW("\x82\xff\x80\0\0\0\0\0\0\x01" KEY)},
     .e = {EERR(1002)}},

    /* masking */
    {"unmasked client frame", .f = {UNMASKED(FIN | TEXT, "hi")}, .e = {EERR(1002)}},
    {"unmasked server frame on the client side", .client = 1, .f = {UNMASKED(FIN | TEXT, "hi")},
     .e = {DATA(TEXT, 1, 1, "hi")}},
    {"nothing parsed after an error", .f = {UNMASKED(FIN | TEXT, "hi"), FR(FIN | TEXT, "ok")},
     .e = {EERR(1002)}},

    /* RSV bits */
    {"RSV1 without extension", .f = {FR(FIN | RSV1 | TEXT, "x")}, .e = {EERR(1002)}},
    {"RSV2 without extension", .f = {FR(FIN | RSV2 | TEXT, "x")}, .e = {EERR(1002)}},
    {"RSV3 without extension", .f = {FR(FIN | RSV3 | TEXT, "x")}, .e = {EERR(1002)}},
    {"RSV1 negotiated", .rsv_allowed = 4, .f = {FR(FIN | RSV1 | BIN, "x")},
     .e = {DATA(BIN, 1, 1, "x")}},
    /* permessage-deflate: RSV1 on the first frame only (RFC 7692 6.1) */
    {"RSV1 on a ping", .rsv_allowed = 4, .f = {FR(FIN | RSV1 | PING, "x")}, .e = {EERR(1002)}},
    {"RSV1 on a close", .rsv_allowed = 4, .f = {FR(FIN | RSV1 | CLOSE, "")}, .e = {EERR(1002)}},
    {"RSV1 on a continuation", .rsv_allowed = 4,
     .f = {FR(RSV1 | TEXT, "a"), FR(FIN | RSV1 | CONT, "b")},
     .e = {DATA(TEXT, 1, 0, "a"), EERR(1002)}},
    {"compressed text is not UTF-8-checked before inflating", .rsv_allowed = 4,
     .f = {FR(FIN | RSV1 | TEXT, "\xff\xfe")}, .e = {DATA(TEXT, 1, 1, "\xff\xfe")}},
    {"compressed: the wire limit has deflate's slack", .max = 4, .rsv_allowed = 4,
     .f = {FR(FIN | RSV1 | BIN, "0123456789")}, .e = {DATA(BIN, 1, 1, "0123456789")}},
    {"compressed: beyond the slack", .max = 4, .rsv_allowed = 4, .f = {FILL(FIN | RSV1 | BIN, 69)},
     .e = {EERR(1009)}},

    /* reserved opcodes */
    {"opcode 3", .f = {FR(FIN | 3, "")}, .e = {EERR(1002)}},
    {"opcode 4", .f = {FR(FIN | 4, "")}, .e = {EERR(1002)}},
    {"opcode 5", .f = {FR(FIN | 5, "")}, .e = {EERR(1002)}},
    {"opcode 6", .f = {FR(FIN | 6, "")}, .e = {EERR(1002)}},
    {"opcode 7", .f = {FR(FIN | 7, "")}, .e = {EERR(1002)}},
    {"opcode B", .f = {FR(FIN | 0xb, "")}, .e = {EERR(1002)}},
    {"opcode C", .f = {FR(FIN | 0xc, "")}, .e = {EERR(1002)}},
    {"opcode D", .f = {FR(FIN | 0xd, "")}, .e = {EERR(1002)}},
    {"opcode E", .f = {FR(FIN | 0xe, "")}, .e = {EERR(1002)}},
    {"opcode F", .f = {FR(FIN | 0xf, "")}, .e = {EERR(1002)}},

    /* control frames */
    {"ping 125 bytes", .f = {FILL(FIN | PING, 125)}, .e = {EPINGN(125)}},
    {"ping 126 bytes", .f = {FILL(FIN | PING, 126)}, .e = {EERR(1002)}},
    {"close 126 bytes", .f = {FILL(FIN | CLOSE, 126)}, .e = {EERR(1002)}},
    {"fragmented ping", .f = {FR(PING, "x"), FR(FIN | CONT, "y")}, .e = {EERR(1002)}},
    {"empty ping", .f = {FR(FIN | PING, "")}, .e = {EPING("")}},
    {"pong", .f = {FR(FIN | PONG, "pong")}, .e = {EPONG("pong")}},
    {"fragmented text with ping between",
     .f = {FR(TEXT, "Hel"), FR(FIN | PING, "p"), FR(FIN | CONT, "lo")},
     .e = {DATA(TEXT, 1, 0, "Hel"), EPING("p"), DATA(TEXT, 0, 1, "lo")}},
    {"close between fragments", .f = {FR(TEXT, "a"), FR(FIN | CLOSE, "\x03\xe8")},
     .e = {DATA(TEXT, 1, 0, "a"), ECLOSE(1000, "")}},

    /* fragmentation order */
    {"three fragments", .f = {FR(BIN, "ab"), FR(CONT, "cd"), FR(FIN | CONT, "ef")},
     .e = {DATA(BIN, 1, 1, "abcdef")}},
    {"empty fragments", .f = {FR(TEXT, ""), FR(CONT, ""), FR(FIN | CONT, "")},
     .e = {DATA(TEXT, 1, 1, "")}},
    /* No event for an empty non-final fragment: first=1 goes to the message's next event. */
    {"empty first fragment, ping, empty last",
     .f = {FR(TEXT, ""), FR(FIN | PING, "p"), FR(FIN | CONT, "")},
     .e = {EPING("p"), DATA(TEXT, 1, 1, "")}},
    {"empty first fragment", .f = {FR(BIN, ""), FR(FIN | CONT, "xy")},
     .e = {DATA(BIN, 1, 1, "xy")}},
    {"continuation without start", .f = {FR(FIN | CONT, "x")}, .e = {EERR(1002)}},
    {"continuation after a finished message", .f = {FR(FIN | TEXT, "a"), FR(FIN | CONT, "b")},
     .e = {DATA(TEXT, 1, 1, "a"), EERR(1002)}},
    {"text during fragmented text", .f = {FR(TEXT, "a"), FR(FIN | TEXT, "b")},
     .e = {DATA(TEXT, 1, 0, "a"), EERR(1002)}},
    {"binary during fragmented text", .f = {FR(TEXT, "a"), FR(FIN | BIN, "b")},
     .e = {DATA(TEXT, 1, 0, "a"), EERR(1002)}},

    /* UTF-8 */
    {"text kosme", .f = {FR(FIN | TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")},
     .e = {DATA(TEXT, 1, 1, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")}},
    {"4-byte char split 0|4", .f = {FR(TEXT, "a"), FR(FIN | CONT, UTF8_SMILE "b")},
     .e = {DATA(TEXT, 1, 1, "a" UTF8_SMILE "b")}},
    {"4-byte char split 1|3",
     .f = {FR(TEXT, "a\xf0"), FR(FIN | CONT, "\x9f\x98\x80"
                                             "b")},
     .e = {DATA(TEXT, 1, 1, "a" UTF8_SMILE "b")}},
    {"4-byte char split 2|2",
     .f = {FR(TEXT, "a\xf0\x9f"), FR(FIN | CONT, "\x98\x80"
                                                 "b")},
     .e = {DATA(TEXT, 1, 1, "a" UTF8_SMILE "b")}},
    {"4-byte char split 3|1",
     .f = {FR(TEXT, "a\xf0\x9f\x98"), FR(FIN | CONT, "\x80"
                                                     "b")},
     .e = {DATA(TEXT, 1, 1, "a" UTF8_SMILE "b")}},
    {"4-byte char split 4|0", .f = {FR(TEXT, "a" UTF8_SMILE), FR(FIN | CONT, "b")},
     .e = {DATA(TEXT, 1, 1, "a" UTF8_SMILE "b")}},
    {"4-byte char over four frames with pings",
     .f = {FR(TEXT, "\xf0"), FR(FIN | PING, ""), FR(CONT, "\x9f"), FR(CONT, "\x98"),
           FR(FIN | PING, "x"), FR(FIN | CONT, "\x80")},
     .e = {DATA(TEXT, 1, 0, "\xf0"), EPING(""), DATA(TEXT, 0, 0, "\x9f\x98"), EPING("x"),
           DATA(TEXT, 0, 1, "\x80")}},
    {"invalid UTF-8 in the first fragment", .f = {FR(TEXT, "a\xff"), FR(FIN | CONT, "b")},
     .e = {EERR(1007)}},
    {"surrogate in the second fragment", .f = {FR(TEXT, "ab"), FR(FIN | CONT, "\xed\xa0\x80")},
     .e = {DATA(TEXT, 1, 0, "ab"), EERR(1007)}},
    {"split char with a bad continuation", .f = {FR(TEXT, "\xf0\x9f"), FR(FIN | CONT, "A")},
     .e = {DATA(TEXT, 1, 0, "\xf0\x9f"), EERR(1007)}},
    {"text truncated at the end of the message", .f = {FR(FIN | TEXT, "a\xe2\x82")},
     .e = {EERR(1007)}},
    {"invalid UTF-8 in a partly received frame",
     .f = {CUT(FIN | TEXT,
               "a\xff"
               "cdefghij",
               8)},
     .e = {EERR(1007)}},
    {"partly received frame yields its bytes", .f = {CUT(FIN | TEXT, "abcdef", 3)},
     .e = {DATA(TEXT, 1, 0, "abc")}},
    {"binary is not UTF-8 checked", .f = {FR(FIN | BIN, "\xff\xfe\xc0")},
     .e = {DATA(BIN, 1, 1, "\xff\xfe\xc0")}},

    /* close frames */
    {"close empty", .f = {FR(FIN | CLOSE, "")}, .e = {ECLOSE(1005, "")}},
    {"close 1 byte", .f = {FR(FIN | CLOSE, "\x03")}, .e = {EERR(1002)}},
    /* A stale ctrl_buf[1] from the ping would make 0x03e8 = 1000 if the length went unchecked. */
    {"close 1 byte after a ping", .f = {FR(FIN | PING, "x\xe8"), FR(FIN | CLOSE, "\x03")},
     .e = {EPING("x\xe8"), EERR(1002)}},
    {"close with reason",
     .f = {FR(FIN | CLOSE, "\x03\xe8"
                           "bye")},
     .e = {ECLOSE(1000, "bye")}},
    {"close with UTF-8 reason",
     .f = {FR(FIN | CLOSE, "\x0f\xa0"
                           "\xce\xba")},
     .e = {ECLOSE(4000, "\xce\xba")}},
    {"close reason invalid UTF-8",
     .f = {FR(FIN | CLOSE, "\x03\xe8"
                           "a\xff")},
     .e = {EERR(1007)}},
    {"close reason truncated UTF-8",
     .f = {FR(FIN | CLOSE, "\x03\xe8"
                           "a\xce")},
     .e = {EERR(1007)}},
    {"close code 1005 on the wire", .f = {FR(FIN | CLOSE, "\x03\xed")}, .e = {EERR(1002)}},

    /* max_message */
    {"max_message exact", .max = 10, .f = {FR(FIN | TEXT, "0123456789")},
     .e = {DATA(TEXT, 1, 1, "0123456789")}},
    {"max_message + 1", .max = 10, .f = {FR(FIN | TEXT, "0123456789A")}, .e = {EERR(1009)}},
    {"max_message exact over fragments", .max = 10,
     .f = {FR(TEXT, "01234"), FR(FIN | CONT, "56789")}, .e = {DATA(TEXT, 1, 1, "0123456789")}},
    {"max_message + 1 over fragments", .max = 10,
     .f = {FR(TEXT, "01234"), FR(FIN | CONT, "56789A")},
     .e = {DATA(TEXT, 1, 0, "01234"), EERR(1009)}},
    {"max_message judged at the header", .max = 10, .f = {HDR_ONLY(FIN | BIN, 65536)},
     .e = {EERR(1009)}},
    {"max_message ignores control frames", .max = 4,
     .f = {FR(TEXT, "ab"), FR(FIN | PING, "12345"), FR(FIN | CONT, "cd")},
     .e = {DATA(TEXT, 1, 0, "ab"), EPING("12345"), DATA(TEXT, 0, 1, "cd")}},
    {"max_message per message", .max = 4, .f = {FR(FIN | TEXT, "abcd"), FR(FIN | TEXT, "efgh")},
     .e = {DATA(TEXT, 1, 1, "abcd"), DATA(TEXT, 1, 1, "efgh")}},
};

START_TEST(test_rows)
{
	run_row(&rows[_i]);
}
END_TEST

static const struct close_code_row {
	uint16_t code;
	uint16_t want; /* the close code reported, or the error */
} close_rows[] = {
    {1000, 1000}, {1001, 1001}, {1002, 1002}, {1003, 1003}, {1007, 1007}, {1008, 1008},
    {1009, 1009}, {1010, 1010}, {1011, 1011}, {1012, 1012}, {1013, 1013}, {1014, 1014},
    {3000, 3000}, {4999, 4999}, {0, 0},       {999, 0},     {1004, 0},    {1005, 0},
    {1006, 0},    {1015, 0},    {1016, 0},    {1100, 0},    {2000, 0},    {2999, 0},
    {5000, 0},    {65535, 0},
};

/* Close codes on the wire: the valid ones are reported, the others fail with 1002. */
START_TEST(test_close_codes)
{
	const struct close_code_row *c = &close_rows[_i];
	char pl[3];
	struct prow row;

	memset(&row, 0, sizeof(row));
	row.name = "close code";
	pl[0] = c->code >> 8;
	pl[1] = c->code & 0xff;
	pl[2] = '\0';
	row.f[0].b0 = 0x100 | FIN | CLOSE;
	row.f[0].pl = pl;
	row.f[0].len = 2;
	if (c->want != 0) {
		row.e[0].type = WS_EV_CLOSE;
		row.e[0].code = c->want;
		row.e[0].data = "";
	} else {
		row.e[0].type = WS_EV_ERROR;
		row.e[0].code = 1002;
	}
	run_row(&row);
}
END_TEST

/* Byte by byte through one frame: frame_left counts down, first only once, last at the end. */
START_TEST(test_frame_left)
{
	struct ws_parser p;
	struct ws_event ev;
	uint8_t v[WS_FRAME_HDR_MAX + 10];
	size_t n, i, used;
	enum ws_ev_type t;

	n = ws_frame_encode(v, 1, 0, WS_OP_BINARY, 10, test_key);
	ck_assert_uint_eq(n, 6);
	for (i = 0; i < 10; i++)
		v[n + i] = (uint8_t)i ^ test_key[i & 3];
	ws_parser_init(&p, 0, 1);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(ws_parser_feed(&p, v + i, 1, &used, &ev), WS_EV_NONE);
		ck_assert_uint_eq(used, 1);
	}
	ck_assert_int_eq(p.state, WS_PS_PAYLOAD);
	for (i = 0; i < 10; i++) {
		t = ws_parser_feed(&p, v + n + i, 1, &used, &ev);
		ck_assert_int_eq(t, WS_EV_DATA);
		ck_assert_uint_eq(used, 1);
		ck_assert_uint_eq(ev.len, 1);
		ck_assert_uint_eq(ev.data[0], i);
		ck_assert_uint_eq(ev.first, i == 0);
		ck_assert_uint_eq(ev.last, i == 9);
		ck_assert(ev.frame_left == 9 - i);
	}
	ck_assert_int_eq(p.state, WS_PS_HEADER);
	ck_assert(!ws_parser_in_message(&p));
}
END_TEST

/* One event per call; *used stops right after it, and the payload is unmasked in place. */
START_TEST(test_used_and_in_place)
{
	struct ws_parser p;
	struct ws_event ev;
	uint8_t v[64];
	size_t n = 0, used, f1;

	n += ws_frame_encode(v, 0, 0, WS_OP_TEXT, 3, test_key);
	memcpy(v + n, "abc", 3);
	ws_mask(v + n, 3, test_key, 0);
	n += 3;
	f1 = n;
	n += ws_frame_encode(v + n, 1, 0, WS_OP_CONT, 2, test_key);
	memcpy(v + n, "de", 2);
	ws_mask(v + n, 2, test_key, 0);
	n += 2;

	ws_parser_init(&p, 0, 1);
	ck_assert_int_eq(ws_parser_feed(&p, v, n, &used, &ev), WS_EV_DATA);
	ck_assert_uint_eq(used, f1);
	ck_assert_ptr_eq(ev.data, v + f1 - 3);
	ck_assert(memcmp(v + f1 - 3, "abc", 3) == 0);
	ck_assert(ev.first && !ev.last);
	ck_assert(ws_parser_in_message(&p));

	ck_assert_int_eq(ws_parser_feed(&p, v + f1, n - f1, &used, &ev), WS_EV_DATA);
	ck_assert_uint_eq(used, n - f1);
	ck_assert(memcmp(ev.data, "de", 2) == 0 && ev.len == 2);
	ck_assert(!ev.first && ev.last);
	ck_assert(!ws_parser_in_message(&p));

	/* Nothing fed, nothing happens; NULL is fine with 0 bytes. */
	ck_assert_int_eq(ws_parser_feed(&p, NULL, 0, &used, &ev), WS_EV_NONE);
	ck_assert_uint_eq(used, 0);
}
END_TEST

/* An idle parser holds no control buffer: a ping whole in one read is unmasked in place; one
 * split across two reads is gathered in a buffer that lives until the next feed. */
START_TEST(test_control_buffer_only_while_split)
{
	static const uint8_t key[4] = {9, 8, 7, 6};
	struct ws_parser p;
	struct ws_event ev;
	uint8_t f[32], g[32];
	size_t n, used;

	ck_assert_uint_le(sizeof(struct ws_parser), 128);
	ws_parser_init(&p, 0, 1);
	n = ws_frame_encode(f, 1, 0, WS_OP_PING, 5, key);
	memcpy(f + n, "hello", 5);
	ws_mask(f + n, 5, key, 0);
	n += 5;
	memcpy(g, f, n);
	ck_assert_int_eq(ws_parser_feed(&p, f, n, &used, &ev), WS_EV_PING);
	ck_assert_uint_eq(used, n);
	ck_assert_ptr_eq(ev.data, f + n - 5); /* in place, no copy */
	ck_assert(memcmp(ev.data, "hello", 5) == 0);
	ck_assert_ptr_null(p.ctrl_buf);
	/* The same frame in two reads: header + 2 bytes, then 3. */
	ck_assert_int_eq(ws_parser_feed(&p, g, n - 3, &used, &ev), WS_EV_NONE);
	ck_assert_uint_eq(used, n - 3);
	ck_assert_ptr_nonnull(p.ctrl_buf);
	memset(g, 0, n - 3); /* the caller need not keep the first read */
	ck_assert_int_eq(ws_parser_feed(&p, g + n - 3, 3, &used, &ev), WS_EV_PING);
	ck_assert_uint_eq(ev.len, 5);
	ck_assert(memcmp(ev.data, "hello", 5) == 0);
	ck_assert_int_eq(ws_parser_feed(&p, NULL, 0, &used, &ev), WS_EV_NONE);
	ck_assert_ptr_null(p.ctrl_buf); /* freed by the next feed */
	ws_parser_free(&p);
}
END_TEST

/* The error stays: same code and reason, nothing consumed, even for valid input. */
START_TEST(test_failed_sticky)
{
	struct ws_parser p;
	struct ws_event ev;
	uint8_t bad[] = {0x81, 0x02, 'h', 'i'};
	uint8_t ok[] = {0x81, 0x80, 1, 2, 3, 4};
	size_t used;
	int i;

	ws_parser_init(&p, 0, 1);
	ck_assert_int_eq(ws_parser_feed(&p, bad, sizeof(bad), &used, &ev), WS_EV_ERROR);
	ck_assert_uint_eq(ev.close_code, 1002);
	ck_assert_str_eq(ev.reason, ws_frame_strerror(WS_FRAME_ERR_UNMASKED));
	for (i = 0; i < 3; i++) {
		used = 99;
		ck_assert_int_eq(ws_parser_feed(&p, ok, sizeof(ok), &used, &ev), WS_EV_ERROR);
		ck_assert_uint_eq(used, 0);
		ck_assert_uint_eq(ev.close_code, 1002);
		ck_assert_str_eq(ev.reason, ws_frame_strerror(WS_FRAME_ERR_UNMASKED));
	}
}
END_TEST

/*
 * Masking round trip over many frames and key rotations: random payloads with random keys,
 * fed in every chunk size from 1 to 20, come out as sent.
 */
START_TEST(test_mask_roundtrip)
{
	struct ws_parser p;
	struct ws_event ev;
	uint8_t plain[300], key[4], *v, *w;
	size_t n, len, chunk, pos, end, used, got, i;
	uint32_t seed = 12345;

	for (len = 0; len < sizeof(plain); len += 37) {
		for (i = 0; i < len; i++) {
			seed = seed * 1103515245 + 12345;
			plain[i] = seed >> 16;
		}
		for (i = 0; i < 4; i++) {
			seed = seed * 1103515245 + 12345;
			key[i] = seed >> 16;
		}
		v = malloc(WS_FRAME_HDR_MAX + len);
		ck_assert_ptr_nonnull(v);
		for (chunk = 1; chunk <= 20; chunk++) {
			n = ws_frame_encode(v, 1, 0, WS_OP_BINARY, len, key);
			memcpy(v + n, plain, len);
			ck_assert(ws_mask(v + n, len, key, 0) == len);
			n += len;
			ws_parser_init(&p, 0, 1);
			got = 0;
			for (pos = 0, end = 0; end < n;) {
				end = n - end < chunk ? n : end + chunk;
				while (pos < end) {
					w = v + pos;
					if (ws_parser_feed(&p, w, end - pos, &used, &ev) ==
					    WS_EV_NONE) {
						pos = end;
						break;
					}
					REQUIRE(ev.type == WS_EV_DATA);
					REQUIRE(got + ev.len <= len);
					REQUIRE(memcmp(ev.data, plain + got, ev.len) == 0);
					got += ev.len;
					pos += used;
				}
			}
			ck_assert_uint_eq(got, len);
		}
		free(v);
	}
}
END_TEST

/* pass_masked: the chunks stay masked in the buffer (nothing written), each with the key
 * rotated to its first byte, so unmasking a chunk alone with ev.mask gives the plain bytes;
 * text is still UTF-8-checked (1007) and the size limit still holds (1009). */
START_TEST(test_pass_masked)
{
	static const uint8_t key[4] = {0x5a, 0x13, 0xc7, 0x2e};
	struct ws_parser p;
	struct ws_event ev;
	uint8_t plain[203], v[WS_FRAME_HDR_MAX + sizeof(plain)], wire[sizeof(v)], chunk[256];
	size_t n, pos, end, used, got, step;

	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)('a' + i % 26);
	for (step = 1; step <= 9; step++) {
		n = ws_frame_encode(v, 1, 0, WS_OP_TEXT, sizeof(plain), key);
		memcpy(v + n, plain, sizeof(plain));
		(void)ws_mask(v + n, sizeof(plain), key, 0);
		n += sizeof(plain);
		memcpy(wire, v, n);
		ws_parser_init(&p, 0, 1);
		ws_parser_pass_masked(&p, 1);
		got = 0;
		for (pos = 0, end = 0; end < n;) {
			end = n - end < step ? n : end + step;
			while (pos < end) {
				if (ws_parser_feed(&p, v + pos, end - pos, &used, &ev) ==
				    WS_EV_NONE) {
					pos = end;
					break;
				}
				REQUIRE(ev.type == WS_EV_DATA && ev.masked);
				memcpy(chunk, ev.data, ev.len);
				(void)ws_mask(chunk, ev.len, ev.mask, 0);
				REQUIRE(memcmp(chunk, plain + got, ev.len) == 0);
				got += ev.len;
				pos += used;
			}
		}
		ck_assert_uint_eq(got, sizeof(plain));
		ck_assert(memcmp(v, wire, n) == 0); /* nothing unmasked in place */
	}

	/* A bad byte in masked text: 1007, found without unmasking the buffer. */
	plain[100] = 0xff;
	n = ws_frame_encode(v, 1, 0, WS_OP_TEXT, sizeof(plain), key);
	memcpy(v + n, plain, sizeof(plain));
	(void)ws_mask(v + n, sizeof(plain), key, 0);
	n += sizeof(plain);
	ws_parser_init(&p, 0, 1);
	ws_parser_pass_masked(&p, 1);
	ck_assert_int_eq(ws_parser_feed(&p, v, n, &used, &ev), WS_EV_ERROR);
	ck_assert_uint_eq(ev.close_code, WS_CLOSE_INVALID_DATA);

	/* Over the limit: 1009 from the header alone. */
	ws_parser_init(&p, 100, 1);
	ws_parser_pass_masked(&p, 1);
	n = ws_frame_encode(v, 1, 0, WS_OP_BINARY, sizeof(plain), key);
	ck_assert_int_eq(ws_parser_feed(&p, v, n, &used, &ev), WS_EV_ERROR);
	ck_assert_uint_eq(ev.close_code, WS_CLOSE_TOO_BIG);
}
END_TEST

static Suite *
ws_parser_suite(void)
{
	Suite *s = suite_create("ws_parser");
	TCase *tc;

	tc = tcase_create("rows");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_rows, 0, sizeof(rows) / sizeof(rows[0]));
	tcase_add_loop_test(tc, test_close_codes, 0, sizeof(close_rows) / sizeof(close_rows[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("api");
	tcase_add_test(tc, test_frame_left);
	tcase_add_test(tc, test_used_and_in_place);
	tcase_add_test(tc, test_failed_sticky);
	tcase_add_test(tc, test_control_buffer_only_while_split);
	tcase_add_test(tc, test_mask_roundtrip);
	tcase_add_test(tc, test_pass_masked);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(ws_parser_suite());
}
