// The shared helpers without a DOM (static/lib/).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { translucent } from "../../static/lib/colours.mjs";
import { pollWhileActive } from "../../static/lib/dom.mjs";
import { formatBytes, formatFixed, formatSeconds, formatTime } from "../../static/lib/format.mjs";
import { CLOSE_CODES, TOO_MANY_RETRY_MS, afterClose } from "../../static/lib/live.mjs";
import { socketUrl, urlFill } from "../../static/lib/urls.mjs";

test("URL templates from the page are filled in, and escaped", () => {
  assert.equal(urlFill("/jobs/{id}/", { id: 12 }), "/jobs/12/");
  assert.equal(
    urlFill("/api/jobs/3/chunks/{index}/", { index: "a/b" }),
    "/api/jobs/3/chunks/a%2Fb/",
  );
  assert.equal(urlFill("/x/{missing}/", {}), "/x/{missing}/");
});

test("a socket opens on the page's own host, wss under https", () => {
  assert.equal(
    socketUrl("/ws/overview/", { protocol: "https:", host: "h:1" }),
    "wss://h:1/ws/overview/",
  );
  assert.equal(socketUrl("/ws/jobs/1/", { protocol: "http:", host: "h" }), "ws://h/ws/jobs/1/");
});

test("a CSS colour gets an alpha channel", () => {
  assert.equal(translucent("#8fa9e0", 0.45), "#8fa9e073");
  assert.equal(translucent("rgb(1, 2, 3)", 0.5), "rgb(1, 2, 3)");
});

test("durations, figures and times", () => {
  assert.equal(formatSeconds(null), "—");
  assert.equal(formatFixed(undefined, 2, "×"), "—");
  assert.equal(formatFixed(1.234, 2, "×"), "1.23×");
  assert.equal(formatTime("not a time"), "—");
  assert.match(formatTime("2026-11-26T08:12:03Z"), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+$/);
});

test("durations follow the rules the server shares, at every rounding edge", () => {
  const table = JSON.parse(readFileSync(new URL("../duration_cases.json", import.meta.url)));
  for (const [seconds, text] of table.cases) assert.equal(formatSeconds(seconds), text, seconds);
  // No minute ever shows 60 seconds, nor an hour 60 minutes.
  for (let tenths = 0; tenths < 80_000; tenths++) {
    assert.doesNotMatch(formatSeconds(tenths / 10), /(min|h) 60 (s|min)$/);
  }
});

test("memory reads in binary units, one decimal below ten", () => {
  assert.equal(formatBytes(512 * 1024 * 1024), "512 MiB");
  assert.equal(formatBytes(1.5 * 1024 ** 3), "1.5 GiB");
  assert.equal(formatBytes(800 * 1024), "800 KiB");
  assert.equal(formatBytes(12), "12 B");
  assert.equal(formatBytes(1024 * 1024 - 1), "1.0 MiB");
  assert.equal(formatBytes(-3 * 1024 * 1024), "-3.0 MiB");
  assert.equal(formatBytes(null), "—");
});

test("a closed socket stops, backs off, or waits long when the person has too many", () => {
  const half = () => 0.5;
  assert.deepEqual(afterClose(CLOSE_CODES.notFound, 500, half), {
    text: "not available",
    state: "closed",
    delay: null,
    backoff: 500,
  });
  const dropped = afterClose(1006, 4000, half);
  assert.equal(dropped.delay, 4000);
  assert.equal(dropped.backoff, 8000);
  assert.equal(afterClose(1006, 8000, half).backoff, 10000);
  // A cap refusal is a state with a reason and a slow retry, not a quick loop.
  const refused = afterClose(CLOSE_CODES.tooManySockets, 500, half);
  assert.equal(refused.delay, TOO_MANY_RETRY_MS);
  assert.match(refused.text, /too many open pages/);
  assert.equal(refused.backoff, 500);
});

test("a page's state is polled while it is active, and a failed fetch waits a turn", async () => {
  const answers = [
    new Error("offline"),
    { status: "running", n: 1 },
    { status: "succeeded", n: 2 },
  ];
  const asked = [];
  const seen = [];
  globalThis.fetch = async (url) => {
    asked.push(url);
    const answer = answers.shift();
    if (answer instanceof Error) throw answer;
    return { ok: true, json: async () => answer };
  };
  await new Promise((done) => {
    pollWhileActive(
      "/api/x/",
      { status: "running" },
      {
        onState: (state) => {
          seen.push(state.n);
          if (state.status !== "running") setTimeout(done, 20);
        },
        active: (state) => state.status === "running",
        everyMs: 1,
      },
    );
  });
  assert.deepEqual(seen, [1, 2]);
  assert.equal(asked.length, 3); // not again once it ended
  pollWhileActive("/api/x/", { status: "succeeded" }, { onState() {}, active: () => false });
  await new Promise((done) => setTimeout(done, 10));
  assert.equal(asked.length, 3); // never starts for a finished one
  delete globalThis.fetch;
});
