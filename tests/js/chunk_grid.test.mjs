// The chunk grid's layout and keys (static/jobs/chunk_grid.mjs): where each chunk's square
// is, which chunk a point is on, where a key moves the chosen chunk.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  CELL,
  GAP,
  PAD,
  cellAt,
  cellOrigin,
  gridLayout,
  gridMove,
  rowsInView,
} from "../../static/jobs/chunk_grid.mjs";

describe("layout", () => {
  test("as many 14 px squares as fit in a row, 3 px apart, and the full height", () => {
    // 10 squares need 2·3 + 10·14 + 9·3 = 173 px.
    assert.equal(gridLayout(100, 173).columns, 10);
    assert.equal(gridLayout(100, 172).columns, 9);
    const layout = gridLayout(100_000, 1000);
    assert.equal(layout.columns, 58);
    assert.equal(layout.rows, Math.ceil(100_000 / 58));
    assert.equal(layout.height, 2 * PAD + layout.rows * (CELL + GAP) - GAP);
    assert.equal(gridLayout(5, 10).columns, 1); // never no column at all
  });

  test("a point on a square names its chunk; gaps, padding and past the end name none", () => {
    const layout = gridLayout(25, 173); // 10 columns, 3 rows, the last one half full
    for (const index of [0, 9, 10, 24]) {
      const { x, y } = cellOrigin(layout, index);
      assert.equal(cellAt(layout, x, y), index);
      assert.equal(cellAt(layout, x + CELL - 1, y + CELL - 1), index);
      assert.equal(cellAt(layout, x + CELL, y), -1); // the gap after it
    }
    assert.equal(cellAt(layout, 1, 1), -1);
    const { x, y } = cellOrigin(layout, 29);
    assert.equal(cellAt(layout, x, y), -1);
  });

  test("the rows in view of a scrolled box", () => {
    const layout = gridLayout(100_000, 1000);
    assert.deepEqual(rowsInView(layout, 0, 352), { first: 0, last: 20 });
    const top = 1000 * (CELL + GAP);
    assert.deepEqual(rowsInView(layout, top, 352), { first: 999, last: 1020 });
  });
});

describe("keys", () => {
  const layout = gridLayout(25, 173); // 10 columns

  test("arrows move by one square or one row; Home and End go to the ends", () => {
    assert.equal(gridMove(layout, 5, "ArrowRight"), 6);
    assert.equal(gridMove(layout, 5, "ArrowLeft"), 4);
    assert.equal(gridMove(layout, 5, "ArrowDown"), 15);
    assert.equal(gridMove(layout, 15, "ArrowUp"), 5);
    assert.equal(gridMove(layout, 12, "Home"), 0);
    assert.equal(gridMove(layout, 2, "End"), 24);
  });

  test("the edges hold: no row above the first, none below the last", () => {
    assert.equal(gridMove(layout, 3, "ArrowUp"), 3);
    assert.equal(gridMove(layout, 18, "ArrowDown"), 18);
    assert.equal(gridMove(layout, 0, "ArrowLeft"), 0);
    assert.equal(gridMove(layout, 24, "ArrowRight"), 24);
    assert.equal(gridMove(layout, 5, "PageDown", 5), 24);
    assert.equal(gridMove(layout, 15, "PageUp", 1), 5);
  });

  test("other keys are not the grid's", () => {
    assert.equal(gridMove(layout, 5, "Tab"), null);
    assert.equal(gridMove(layout, 5, "Enter"), null);
    assert.equal(gridMove(gridLayout(0, 173), 0, "End"), null);
  });
});
