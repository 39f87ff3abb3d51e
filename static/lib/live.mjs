// A websocket that stays connected: reconnects with jittered exponential backoff and shows
// its state in a status element ("live" / "broker unavailable — updates paused" /
// "disconnected — reconnecting in N s").
import { socketUrl } from "./urls.mjs";

// jobs/protocol.py's CLOSE_* codes (tests/consumers/test_close_codes.py compares them).
export const CLOSE_CODES = {
  unauthenticated: 4401,
  notFound: 4404,
  tooManySockets: 4429,
  serverError: 4500,
};
// Not logged in / not yours: retrying cannot help (protocol.CLOSE_FINAL).
export const STOP_CODES = new Set([CLOSE_CODES.unauthenticated, CLOSE_CODES.notFound]);

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10000;
// The person has the most live connections allowed: retry slowly, saying why, until a tab
// closes (a quick retry would only be refused again).
export const TOO_MANY_RETRY_MS = 30000;

// What a closed socket does next: the status to show, how long to wait before the next
// try (null: stop), and the backoff after that.
// jobs/protocol.py's BROKER_STATE: whether updates flow; also the server's heartbeat, sent
// on a socket that has sent nothing else for HEARTBEAT_S (jobs/sockets/guards.py, 5 s).
export const BROKER_STATE = "broker.state";
// A socket that has said nothing for this long is dead, however open it looks: the page
// drops it and connects again.
export const SILENCE_MS = 16000;
// The page's own code for such a socket (never sent by the server): it reconnects.
const SILENT = 4000;

// The status a message sets, or null when it leaves the status as it is.
export function stateFromMessage(message) {
  if (message.type !== BROKER_STATE) return null;
  return message.available
    ? { text: "live", state: "live" }
    : { text: "broker unavailable — updates paused", state: "paused" };
}

export function afterClose(code, backoff, random = Math.random) {
  if (STOP_CODES.has(code)) return { text: "not available", state: "closed", delay: null, backoff };
  if (code === CLOSE_CODES.tooManySockets) {
    return {
      text: "too many open pages: close one; retrying",
      state: "reconnecting",
      delay: TOO_MANY_RETRY_MS,
      backoff,
    };
  }
  return {
    text: "disconnected — reconnecting",
    state: "reconnecting",
    delay: backoff * (0.75 + random() / 2),
    backoff: Math.min(backoff * 2, MAX_RETRY_MS),
  };
}

export function liveSocket(path, { onMessage, status }) {
  let retryDelay = FIRST_RETRY_MS;
  let socket = null;

  const stateText = status.querySelector(".connection-state") || status;
  const countdown = status.querySelector(".connection-countdown");
  let ticker = null;

  // The state is a polite live region and changes only with the state; the seconds left
  // tick in a sibling hidden from screen readers, so nothing is re-read every second.
  function show(text, state, retryAt) {
    if (stateText.textContent !== text) stateText.textContent = text;
    status.dataset.state = state;
    clearInterval(ticker);
    ticker = null;
    if (!countdown) return;
    countdown.textContent = "";
    if (retryAt) {
      const tick = () => {
        countdown.textContent = ` in ${Math.max(0, Math.ceil((retryAt - Date.now()) / 1000))} s`;
      };
      tick();
      ticker = setInterval(tick, 1000);
    }
  }

  let silence = null;
  // Restarted by every message; when it runs out the socket is dropped as a dead one.
  function listen() {
    clearTimeout(silence);
    silence = setTimeout(() => {
      const dead = socket;
      dead.onclose = null;
      dead.onmessage = null;
      dead.close();
      closed(SILENT);
    }, SILENCE_MS);
  }

  function closed(code) {
    clearTimeout(silence);
    const next = afterClose(code, retryDelay);
    retryDelay = next.backoff;
    if (next.delay === null) {
      show(next.text, next.state);
      return;
    }
    show(next.text, next.state, Date.now() + next.delay);
    setTimeout(connect, next.delay);
  }

  function connect() {
    socket = new WebSocket(socketUrl(path));
    socket.onopen = () => {
      show("live", "live");
      listen();
    };
    socket.onmessage = (event) => {
      listen();
      const message = JSON.parse(event.data);
      // A refusal (e.g. too many sockets) is sent before its close: not a working socket.
      if (message.type !== "error") retryDelay = FIRST_RETRY_MS;
      const state = stateFromMessage(message);
      if (state) {
        show(state.text, state.state);
        return;
      }
      onMessage(message);
    };
    socket.onclose = (event) => closed(event.code);
  }

  connect();
  return {
    send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    },
  };
}
