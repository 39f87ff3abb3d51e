// A websocket that stays connected: reconnects with jittered exponential backoff and shows
// its state in a status element ("live" / "disconnected — reconnecting in N s").
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

export function liveSocket(path, { onMessage, status }) {
  let retryDelay = 500;
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

  function connect() {
    socket = new WebSocket(socketUrl(path));
    socket.onopen = () => {
      retryDelay = 500;
      show("live", "live");
    };
    socket.onmessage = (event) => onMessage(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (STOP_CODES.has(event.code)) {
        show("not available", "closed");
        return;
      }
      const delay = retryDelay * (0.75 + Math.random() / 2);
      retryDelay = Math.min(retryDelay * 2, 10000);
      show("disconnected — reconnecting", "reconnecting", Date.now() + delay);
      setTimeout(connect, delay);
    };
  }

  connect();
  return {
    send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    },
  };
}
