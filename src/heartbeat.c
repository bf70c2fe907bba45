/* heartbeat.c - what the endpoint's heartbeat rules (ws_endpoint_tick: pings every
 * ping_interval, dead after pong_timeout without progress while a ping is out, idle after
 * idle_timeout without a message, the drain time) do to a client connection: close it with
 * 1001 (and a retry hint when draining), drop it when dead, send the optional app_message with
 * each ping, keep the round trip. Nothing runs per message. */
#include "heartbeat.h"

#include "conn.h"
#include "env.h"
#include "log.h"
#include "metrics.h"
#include "ws_frame.h"

void
heartbeat_start(struct conn *c)
{
	struct ws_endpoint ep;

	conn_endpoint(c, &ep);
	ws_endpoint_start(&ep, conn_now_ms());
}

void
heartbeat_fire(struct conn *c)
{
	struct ws_endpoint ep;

	conn_endpoint(c, &ep);
	ws_endpoint_tick(&ep, conn_now_ms());
}

void
heartbeat_expired(void *arg, enum ws_hb_end why)
{
	struct conn *c = arg;

	switch (why) {
	case WS_HB_DRAIN:
		conn_send_close_retry(c, WS_CLOSE_GOING_AWAY);
		break;
	case WS_HB_IDLE:
		conn_log(c, LOG_LVL_INFO, "idle for %llu ms",
		         (unsigned long long)(conn_now_ms() - c->live.last_msg_ms));
		METRIC_ADD(c->env->stats->idle_timeouts, 1);
		conn_send_close(c, WS_CLOSE_GOING_AWAY, "idle timeout");
		break;
	case WS_HB_DEAD:
		/* The peer is not reading or not there: a close frame would not be answered. */
		METRIC_ADD(c->env->stats->pong_timeouts, 1);
		conn_close(c, "no pong within pong_timeout");
		break;
	}
}

void
heartbeat_pinged(void *arg)
{
	struct conn *c = arg;

	if (c->cfg->app_message != NULL)
		(void)conn_send(c, WS_OP_TEXT, (const uint8_t *)c->cfg->app_message,
		                c->cfg->app_message_len);
}

void
heartbeat_rtt(void *arg, uint64_t rtt_ms)
{
	struct conn *c = arg;

	metrics_rtt(c->env->stats, rtt_ms * 1000);
}

void
heartbeat_drain_at(struct conn *c, uint64_t at_ms)
{
	uint64_t now = conn_now_ms();
	struct ws_endpoint ep;

	c->live.drain_at_ms = at_ms > now ? at_ms : now;
	if (c->live.drain_at_ms <= now) {
		conn_send_close_retry(c, WS_CLOSE_GOING_AWAY);
		return;
	}
	conn_endpoint(c, &ep);
	ws_endpoint_schedule(&ep, now);
}
