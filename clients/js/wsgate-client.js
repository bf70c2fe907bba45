// wsgate-client.js - a reconnecting WebSocket for wsgate (browser and Node >= 18, no
// dependencies). It reconnects with capped exponential backoff and full jitter, obeys the
// server's retry hints (close reason "retry=S"), resumes channels with history from the last
// position seen (json envelope "pos", since= on reconnect, "resume" messages, close reason
// since=), reports gap notices to onGap, and treats the route's app-level heartbeat message
// as liveness. The wire formats are wsgate's delivery contract (README "Reconnecting clients").

const TOKEN_RE = /^[A-Za-z0-9_.:@,-]+$/;

// The close reason's key=value tokens ("retry=3.2 since=E:O"); unknown keys are kept but
// ignored by the client, anything that is not a token is skipped.
export function parseCloseReason(reason) {
  const out = {};
  for (const tok of String(reason || '').split(' ')) {
    const i = tok.indexOf('=');
    if (i <= 0) continue;
    const k = tok.slice(0, i), v = tok.slice(i + 1);
    if (!TOKEN_RE.test(v)) continue;
    if (k === 'retry') {
      const s = Number(v);
      if (Number.isFinite(s) && s >= 0) out.retry = s;
    } else {
      out[k] = v;
    }
  }
  return out;
}

// Full jitter: uniform in [0, min(max, min * factor^attempt)].
export function backoffDelay(attempt, o, random = Math.random) {
  const cap = Math.min(o.maxDelay, o.minDelay * Math.pow(o.factor, attempt));
  return Math.floor(random() * cap);
}

// since= for the positions map {channel: "E:O"}: one channel "E:O", several
// "chan1@E:O,chan2@E:O" (the contract's two forms).
export function sinceParam(positions) {
  const chans = Object.keys(positions);
  if (chans.length === 0) return null;
  if (chans.length === 1) return positions[chans[0]];
  return chans.map((c) => `${c}@${positions[c]}`).join(',');
}

const DEFAULTS = {
  protocols: undefined,
  minDelay: 500,        // ms: first backoff cap
  maxDelay: 30000,      // ms: backoff cap
  factor: 2,
  maxRetryHint: 300000, // ms: a server hint above this is clamped
  heartbeatMessage: null, // the route's [heartbeat] app_message: liveness, not delivered
  heartbeatTimeout: 0,  // ms without any message before the link counts as dead; 0 = off
  openTimeout: 20000,   // ms for an attempt to open before it counts as failed; 0 = off
  resume: true,         // track "pos" and send since= on reconnect
  random: Math.random,
  WebSocket: undefined, // constructor; default globalThis.WebSocket (Node 18: pass ws's)
};

export class WsgateClient {
  constructor(url, options = {}) {
    this.url = url;
    this.o = { ...DEFAULTS, ...options };
    this.WS = this.o.WebSocket || globalThis.WebSocket;
    if (typeof this.WS !== 'function') {
      throw new TypeError('no WebSocket constructor: pass options.WebSocket (e.g. from "ws")');
    }
    this.positions = {};   // channel -> "E:O", the last position delivered
    this.attempt = 0;      // failures since the last open
    this.ws = null;
    this.stopped = false;
    this.timer = null;     // reconnect timer
    this.liveTimer = null; // heartbeat deadline
    this.onopen = options.onOpen || null;
    this.onmessage = options.onMessage || null;
    this.onclose = options.onClose || null;
    this.ongap = options.onGap || null;
    this.onerror = options.onError || null;
    this._connect();
  }

  get readyState() {
    return this.ws ? this.ws.readyState : 3;
  }

  send(data) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(data);
    return true;
  }

  // Stops for good: no reconnect.
  close(code = 1000, reason = '') {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.liveTimer);
    clearTimeout(this.openTimer);
    if (this.ws && this.ws.readyState <= 1) this.ws.close(code, reason);
  }

  _url() {
    const since = this.o.resume ? sinceParam(this.positions) : null;
    if (since === null) return this.url;
    const u = new URL(this.url);
    u.searchParams.set('since', since);
    // URLSearchParams escapes ':' ',' '@'; the positions hold none of the characters that
    // need it, so the readable form goes out.
    return u.toString().replace(/since=[^&]*/, `since=${since}`);
  }

  _connect() {
    if (this.stopped) return;
    let ws;
    try {
      ws = new this.WS(this._url(), this.o.protocols);
    } catch (e) {
      this._emit(this.onerror, e);
      this._schedule(null);
      return;
    }
    this.ws = ws;
    let opened = false;
    let refusedHint = null;
    // Liveness while connecting too: an upgrade nobody answers (a balancer holding it, a
    // response lost in a storm) must not leave the client waiting forever.
    clearTimeout(this.openTimer);
    if (this.o.openTimeout) {
      this.openTimer = setTimeout(() => {
        if (ws !== this.ws || opened) return;
        this.ws = null;
        try {
          if (typeof ws.terminate === 'function') ws.terminate(); else ws.close();
        } catch (e) { /* already closing */ }
        this.attempt++;
        const delay = this._schedule(null);
        this._emit(this.onclose, { code: 4001, reason: 'open timeout', wasClean: false }, delay);
      }, this.o.openTimeout);
    }
    if (typeof ws.on === 'function') {
      // Node's "ws" shows the refusal a browser cannot see: 503 + Retry-After is a hint.
      ws.on('unexpected-response', (req, res) => {
        // wsgate's own hint (Wsgate-Retry: retry=1.3) is the slot to a tenth of a second.
        // Else Retry-After, whole seconds, "not before": up to a second of jitter on top,
        // or every client told "1" would come back in the same instant.
        const own = parseCloseReason(res.headers['wsgate-retry']).retry;
        const ra = Number(res.headers['retry-after']);
        if (own !== undefined) refusedHint = own * 1000;
        else if (Number.isFinite(ra) && ra >= 0) refusedHint = ra * 1000 + this.o.random() * 1000;
        req.destroy(new Error(`Unexpected server response: ${res.statusCode}`));
      });
    }
    ws.onopen = () => {
      opened = true;
      clearTimeout(this.openTimer);
      this.attempt = 0;
      this._alive();
      this._emit(this.onopen);
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this._alive();
      this._message(ev.data);
    };
    ws.onerror = (ev) => this._emit(this.onerror, ev);
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      clearTimeout(this.liveTimer);
      this.ws = null;
      const hint = parseCloseReason(ev.reason);
      if (hint.retry === undefined && refusedHint !== null) hint.retry = refusedHint / 1000;
      if (hint.since && Object.keys(this.positions).length <= 1) {
        const ch = Object.keys(this.positions)[0] || '';
        this.positions[ch] = hint.since;
      }
      // A refusal before open (503 over budget, server down) is invisible to a browser:
      // it counts as a failure and backs off. A refusal that said when to come back (Node:
      // Retry-After) is pacing, not failure: it does not lengthen later backoffs.
      if (!opened && hint.retry === undefined) this.attempt++;
      const delay = this._schedule(hint.retry !== undefined ? hint.retry * 1000 : null);
      this._emit(this.onclose, ev, delay);
    };
  }

  // Every message proves the link alive; the heartbeat message only does that.
  _message(data) {
    if (typeof data === 'string') {
      if (this.o.heartbeatMessage !== null && data === this.o.heartbeatMessage) return;
      if (data.charCodeAt(0) === 123 /* { */) {
        let m = null;
        try {
          m = JSON.parse(data);
        } catch (e) {
          m = null;
        }
        if (m && typeof m === 'object') {
          if (m.type === 'gap') {
            this._emit(this.ongap, m);
            return;
          }
          if (m.type === 'resume' && m.since && typeof m.since === 'object') {
            for (const [ch, pos] of Object.entries(m.since)) {
              if (typeof pos === 'string') this.positions[ch] = pos;
            }
            return;
          }
          if (m.type === 'message' && typeof m.pos === 'string' && typeof m.channel === 'string') {
            this.positions[m.channel] = m.pos;
          }
          this._emit(this.onmessage, data, m);
          return;
        }
      }
    }
    this._emit(this.onmessage, data, null);
  }

  _alive() {
    clearTimeout(this.liveTimer);
    if (!this.o.heartbeatTimeout) return;
    const ws = this.ws;
    this.liveTimer = setTimeout(() => {
      // Silent for too long: the path is dead even if TCP does not know yet.
      if (ws === this.ws && ws.readyState <= 1) {
        this.ws = null;
        try {
          ws.close(4000, 'heartbeat timeout');
        } catch (e) { /* already closing */ }
        this.attempt++;
        const delay = this._schedule(null);
        this._emit(this.onclose, { code: 4000, reason: 'heartbeat timeout', wasClean: false }, delay);
      }
    }, this.o.heartbeatTimeout);
  }

  // The server's hint wins (it spreads the fleet's returning clients); otherwise backoff.
  _schedule(hintMs) {
    if (this.stopped) return -1;
    clearTimeout(this.timer);
    const delay = hintMs !== null
      ? Math.min(hintMs, this.o.maxRetryHint)
      : backoffDelay(this.attempt, this.o, this.o.random);
    this.timer = setTimeout(() => this._connect(), delay);
    return delay;
  }

  _emit(fn, ...args) {
    if (typeof fn !== 'function') return;
    try {
      fn.apply(this, args);
    } catch (e) {
      if (fn !== this.onerror) this._emit(this.onerror, e);
    }
  }
}

export default WsgateClient;
