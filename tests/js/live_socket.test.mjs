// static/lib/live.mjs's socket against a fake WebSocket: what its status says when the
// broker pauses and comes back, and that a silent socket is dropped and replaced.
import assert from "node:assert/strict";
import { test } from "node:test";

import { BROKER_STATE, SILENCE_MS, liveSocket, stateFromMessage } from "../../static/lib/live.mjs";

class FakeSocket {
  static OPEN = 1;
  static made = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.closedByPage = false;
    FakeSocket.made.push(this);
  }

  close() {
    this.closedByPage = true;
  }

  // What the server does.
  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen();
  }

  say(message) {
    this.onmessage({ data: JSON.stringify(message) });
  }
}

function fakeStatus() {
  const state = { textContent: "" };
  const countdown = { textContent: "" };
  return {
    dataset: {},
    state,
    querySelector: (selector) => (selector === ".connection-state" ? state : countdown),
  };
}

// A clock the test moves by hand: setTimeout, setInterval, their clears and Date.now.
// (node:test's mock.timers differ between Node 20 and Debian 12's Node 18.)
const clock = {
  now: 0,
  timers: new Map(),
  nextId: 1,
  saved: null,
  install() {
    this.now = 0;
    this.timers.clear();
    this.saved = [
      globalThis.setTimeout,
      globalThis.clearTimeout,
      globalThis.setInterval,
      globalThis.clearInterval,
      Date.now,
    ];
    const add = (fn, delay, every) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.now + Math.max(0, delay || 0), fn, every });
      return id;
    };
    globalThis.setTimeout = (fn, delay) => add(fn, delay, null);
    globalThis.setInterval = (fn, delay) => add(fn, delay, Math.max(1, delay || 0));
    globalThis.clearTimeout = globalThis.clearInterval = (id) => this.timers.delete(id);
    Date.now = () => this.now;
  },
  uninstall() {
    [
      globalThis.setTimeout,
      globalThis.clearTimeout,
      globalThis.setInterval,
      globalThis.clearInterval,
      Date.now,
    ] = this.saved;
  },
  tick(ms) {
    const end = this.now + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (next === null || timer.at < next[1].at)) next = [id, timer];
      }
      if (next === null) break;
      const [id, timer] = next;
      this.now = timer.at;
      if (timer.every === null) this.timers.delete(id);
      else timer.at += timer.every;
      timer.fn();
    }
    this.now = end;
  },
};

function withFakes(run) {
  FakeSocket.made = [];
  globalThis.WebSocket = FakeSocket;
  globalThis.location = { protocol: "http:", host: "h" };
  clock.install();
  try {
    run();
  } finally {
    clock.uninstall();
    delete globalThis.WebSocket;
    delete globalThis.location;
  }
}

test("a broker state message sets the status; other messages leave it", () => {
  assert.deepEqual(stateFromMessage({ type: BROKER_STATE, available: false }), {
    text: "broker unavailable — updates paused",
    state: "paused",
  });
  assert.deepEqual(stateFromMessage({ type: BROKER_STATE, available: true }), {
    text: "live",
    state: "live",
  });
  assert.equal(stateFromMessage({ type: "job.progress" }), null);
});

test("the page says updates are paused while the broker is away, and live when it is back", () => {
  withFakes(() => {
    const status = fakeStatus();
    const received = [];
    liveSocket("/ws/jobs/1/", { onMessage: (m) => received.push(m), status });
    const [socket] = FakeSocket.made;
    assert.equal(socket.url, "ws://h/ws/jobs/1/");
    socket.open();
    assert.equal(status.dataset.state, "live");
    socket.say({ type: BROKER_STATE, available: false });
    assert.equal(status.dataset.state, "paused");
    assert.equal(status.state.textContent, "broker unavailable — updates paused");
    // Heartbeats while paused keep the socket; the page keeps saying why nothing moves.
    clock.tick(SILENCE_MS - 1000);
    socket.say({ type: BROKER_STATE, available: false });
    clock.tick(SILENCE_MS - 1000);
    assert.equal(FakeSocket.made.length, 1);
    socket.say({ type: "job.snapshot", seq: 3 });
    socket.say({ type: BROKER_STATE, available: true });
    assert.equal(status.dataset.state, "live");
    assert.equal(status.state.textContent, "live");
    // The state messages are the socket's business; the page gets the rest.
    assert.deepEqual(received, [{ type: "job.snapshot", seq: 3 }]);
  });
});

test("a socket that says nothing for too long is dropped and a new one opened", () => {
  withFakes(() => {
    const status = fakeStatus();
    liveSocket("/ws/overview/", { onMessage: () => {}, status });
    const [first] = FakeSocket.made;
    first.open();
    first.say({ type: "overview.state" });
    clock.tick(SILENCE_MS - 1);
    assert.equal(first.closedByPage, false);
    clock.tick(1);
    assert.equal(first.closedByPage, true);
    assert.equal(status.dataset.state, "reconnecting");
    clock.tick(1000); // the first retry comes within 0.75 s
    assert.equal(FakeSocket.made.length, 2);
    FakeSocket.made[1].open();
    assert.equal(status.dataset.state, "live");
  });
});
