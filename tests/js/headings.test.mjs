import assert from "node:assert/strict";
import { test } from "node:test";

import { steppedLevels } from "../../static/api/headings.mjs";

test("a heading is never more than one level below the one before it", () => {
  // Swagger UI's: title h1, groups h3, an open operation's sections h4, the schemas' h4.
  assert.deepEqual(steppedLevels([1, 3, 4, 3, 4]), [1, 2, 3, 2, 3]);
});

test("levels that already step by one are kept, and going back up is allowed", () => {
  assert.deepEqual(steppedLevels([1, 2, 3, 2, 1, 2]), [1, 2, 3, 2, 1, 2]);
});

test("a page that starts below h1 starts at 1", () => {
  assert.deepEqual(steppedLevels([2, 2, 4]), [1, 1, 2]);
});
