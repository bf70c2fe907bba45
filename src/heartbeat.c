/* heartbeat.c - server pings every ping_interval, drops a client that made no progress for
 * pong_timeout while a ping is out (nothing read from it, none of our output taken: ws_outq.h),
 * closes one that sent no message for idle_timeout with 1001 and sends the optional
 * app_message. Nothing runs per message: the timer only looks at timestamps when it fires, then
 * sleeps until the nearest deadline. */
#include "heartbeat.h"

#include <string.h>

#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"
#include "ws_frame.h"

#define HB_NEVER UINT64_MAX

static uint64_t
hb_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Arms the timer for the nearest of: next ping, pong deadline, idle deadline. */
static void
heartbeat_schedule(struct conn *c, uint64_t now)
{
	const struct config *cfg = c->cfg;
	uint64_t due = HB_NEVER;

	if (cfg->ping_interval_ms > 0)
		due = hb_min(due, c->next_ping_ms);
	due = hb_min(due, ws_outq_next_look(&c->outq, now, cfg->pong_timeout_ms));
	if (cfg->idle_timeout_ms > 0)
		due = hb_min(due, c->last_msg_ms + cfg->idle_timeout_ms);
	if (c->drain_at_ms != 0)
		due = hb_min(due, c->drain_at_ms);
	if (due == HB_NEVER)
		return;
	conn_timer_arm(c, due > now ? due - now : 0);
}

void
heartbeat_start(struct conn *c)
{
	uint64_t now = conn_now_ms();

	ws_outq_pong(&c->outq);
	c->last_msg_ms = now;
	c->next_ping_ms = now + c->cfg->ping_interval_ms;
	heartbeat_schedule(c, now);
}

void
heartbeat_fire(struct conn *c)
{
	const struct config *cfg = c->cfg;
	uint64_t now = conn_now_ms();
	uint8_t payload[8];

	if (c->drain_at_ms != 0 && now >= c->drain_at_ms) {
		conn_send_close_retry(c, WS_CLOSE_GOING_AWAY);
		return;
	}
	if (cfg->idle_timeout_ms > 0 && now - c->last_msg_ms >= cfg->idle_timeout_ms) {
		conn_log(c, LOG_LVL_INFO, "idle for %llu ms", (unsigned long long)(now - c->last_msg_ms));
		METRIC_ADD(c->w->stats.idle_timeouts, 1);
		conn_send_close(c, WS_CLOSE_GOING_AWAY, "idle timeout");
		return;
	}
	if (now >= ws_outq_dead_at(&c->outq, now, cfg->pong_timeout_ms)) {
		/* The peer is not reading or not there: a close frame would not be answered. */
		METRIC_ADD(c->w->stats.pong_timeouts, 1);
		conn_close(c, "no pong within pong_timeout");
		return;
	}
	if (cfg->ping_interval_ms > 0 && now >= c->next_ping_ms) {
		/* The payload carries the send time, so a pong tells its round trip. One ping at
		 * a time: our own pings being written must not count as the peer's progress. */
		for (int i = 0; i < 8; i++)
			payload[i] = (uint8_t)(now >> (56 - 8 * i));
		if (!ws_outq_ping_outstanding(&c->outq) &&
		    conn_send(c, WS_OP_PING, payload, sizeof(payload)) == 0)
			ws_outq_ping_queued(&c->outq, now);
		if (cfg->app_message != NULL)
			(void)conn_send(c, WS_OP_TEXT, (const uint8_t *)cfg->app_message,
			    cfg->app_message_len);
		c->next_ping_ms = now + cfg->ping_interval_ms;
	}
	heartbeat_schedule(c, now);
}

void
heartbeat_drain_at(struct conn *c, uint64_t at_ms)
{
	uint64_t now = conn_now_ms();

	c->drain_at_ms = at_ms > now ? at_ms : now;
	if (c->drain_at_ms <= now) {
		conn_send_close_retry(c, WS_CLOSE_GOING_AWAY);
		return;
	}
	heartbeat_schedule(c, now);
}

void
heartbeat_pong(struct conn *c, const uint8_t *data, size_t len)
{
	uint64_t sent = 0;

	if (!ws_outq_ping_outstanding(&c->outq))
		return; /* unsolicited pong: a unidirectional heartbeat, nothing to do */
	if (len == 8) {
		uint64_t now = conn_now_ms();
		for (int i = 0; i < 8; i++)
			sent = (sent << 8) | data[i];
		/* Only our own pings carry a send time not in the future. */
		if (sent <= now && now - sent < 3600 * 1000)
			metrics_rtt(&c->w->stats, (now - sent) * 1000);
	}
	ws_outq_pong(&c->outq);
}
