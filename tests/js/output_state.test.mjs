// The Output panel's and the chunk inspector's state (static/jobs/output_state.mjs), driven by
// `chunk.output` messages and the API's answers as the job page receives them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  OUTPUT_KEEP_BLOCKS,
  OUTPUT_KEEP_CHARS,
  atBottom,
  byteLength,
  outputAnswerApply,
  outputBlocks,
  outputCutText,
  outputDirtyTake,
  outputDrawPlan,
  outputHeading,
  outputJobAnswerApply,
  outputMessageApply,
  outputStateCreate,
  spanMerge,
  spansAgree,
} from "../../static/jobs/output_state.mjs";

function message(index, offset, text, cutBytes = 0) {
  return { type: "chunk.output", job: 7, index, offset, text, cut_bytes: cutBytes };
}

describe("chunk.output messages", () => {
  test("text that continues a block is appended, offsets in UTF-8 bytes", () => {
    const output = outputStateCreate();
    assert.deepEqual(outputMessageApply(output, message(0, 0, "héllo\n")), { refetch: false });
    assert.equal(output.blocks.get(0).end, 7);
    assert.deepEqual(outputMessageApply(output, message(0, 7, "wörld\n")), { refetch: false });
    const block = output.blocks.get(0);
    assert.equal(block.text, "héllo\nwörld\n");
    assert.equal(block.end, byteLength("héllo\nwörld\n"));
  });

  test("a message repeated or overlapping adds only what is new", () => {
    const output = outputStateCreate();
    outputMessageApply(output, message(1, 0, "one\ntwo\n"));
    outputMessageApply(output, message(1, 0, "one\ntwo\n"));
    outputMessageApply(output, message(1, 4, "two\nthree\n"));
    assert.equal(output.blocks.get(1).text, "one\ntwo\nthree\n");
  });

  test("a gap asks for the chunk's output again and keeps what the page has", () => {
    const output = outputStateCreate();
    outputMessageApply(output, message(2, 0, "a\n"));
    assert.deepEqual(outputMessageApply(output, message(2, 10, "later\n")), { refetch: true });
    assert.equal(output.blocks.get(2).text, "a\n");
    // A chunk the page has not heard of, mid-way: the beginning is missing too.
    assert.deepEqual(outputMessageApply(output, message(3, 5, "x")), { refetch: true });
    assert.equal(output.blocks.has(3), false);
  });

  test("text from where the server cut starts a block: nothing before it is kept anywhere", () => {
    const output = outputStateCreate();
    assert.deepEqual(outputMessageApply(output, message(4, 900, "tail\n", 900)), {
      refetch: false,
    });
    const block = output.blocks.get(4);
    assert.equal(block.start, 900);
    assert.match(outputCutText(block), /900 B of earlier output cut/);
  });
});

describe("a chunk's last message and its runs", () => {
  test("an empty last message past what the page has asks for the rest", () => {
    const output = outputStateCreate();
    outputMessageApply(output, message(0, 0, "a\n"));
    assert.deepEqual(outputMessageApply(output, message(0, 2, "")), { refetch: false });
    assert.deepEqual(outputMessageApply(output, message(0, 5000, "", 0)), { refetch: true });
  });

  test("output of another run of the chunk replaces the old run's", () => {
    const output = outputStateCreate();
    outputMessageApply(output, message(0, 0, "first run\n"));
    assert.deepEqual(outputMessageApply(output, message(0, 0, "second\n")), { refetch: false });
    assert.equal(output.blocks.get(0).text, "second\n");
    assert.equal(spansAgree({ start: 0, text: "abc" }, { start: 1, text: "bcd" }), true);
    assert.equal(spansAgree({ start: 0, text: "abc" }, { start: 1, text: "xc" }), false);
  });
});

describe("the API's answers", () => {
  test("an answer merges with the text that messages brought meanwhile", () => {
    const output = outputStateCreate();
    outputMessageApply(output, message(0, 0, "a\n"));
    assert.equal(outputMessageApply(output, message(0, 4, "c\n")).refetch, true); // b is missing
    outputAnswerApply(output, {
      index: 0,
      status: "running",
      offset: 0,
      text: "a\nb\nc\n",
      cut_bytes: 0,
      running: true,
    });
    outputMessageApply(output, message(0, 4, "c\nd\n"));
    assert.equal(output.blocks.get(0).text, "a\nb\nc\nd\n");
    assert.equal(output.blocks.get(0).status, "running");
  });

  test("the job's output lists blocks by index; later chunks follow in the order they wrote", () => {
    const output = outputStateCreate();
    outputJobAnswerApply(output, {
      job: 7,
      chunks: [
        { index: 0, status: "done", offset: 0, text: "zero\n", cut_bytes: 0, running: false },
        { index: 3, status: "done", offset: 0, text: "three\n", cut_bytes: 0, running: false },
      ],
    });
    outputMessageApply(output, message(1, 0, "one\n"));
    outputMessageApply(output, message(0, 5, "more\n"));
    assert.deepEqual(
      outputBlocks(output).map((block) => block.index),
      [0, 3, 1],
    );
    assert.deepEqual(
      outputBlocks(output, 2).map((block) => block.index),
      [3, 1],
    );
    assert.deepEqual([...outputDirtyTake(output)].sort(), [0, 1, 3]);
    assert.equal(outputDirtyTake(output).size, 0);
  });

  test("an empty answer makes no block", () => {
    const output = outputStateCreate();
    outputAnswerApply(output, { index: 5, status: "running", offset: 0, text: "", cut_bytes: 0 });
    assert.equal(output.blocks.size, 0);
  });
});

describe("what the page keeps", () => {
  test("a block keeps its last characters, and says how much it cut", () => {
    const output = outputStateCreate();
    const text = "x".repeat(OUTPUT_KEEP_CHARS + 100);
    outputMessageApply(output, message(0, 0, text));
    const block = output.blocks.get(0);
    assert.equal(block.text.length, OUTPUT_KEEP_CHARS);
    assert.equal(block.start, 100);
    assert.equal(block.end, OUTPUT_KEEP_CHARS + 100);
    assert.match(outputCutText(block), /100 B of earlier output cut/);
    // It still continues where the chunk's output continues.
    outputMessageApply(output, message(0, OUTPUT_KEEP_CHARS + 100, "y"));
    assert.ok(output.blocks.get(0).text.endsWith("xy"));
  });

  test("a cut never splits a character made of two UTF-16 units", () => {
    const output = outputStateCreate();
    outputMessageApply(output, message(0, 0, `a${"😀".repeat(OUTPUT_KEEP_CHARS / 2)}`));
    const block = output.blocks.get(0);
    assert.ok(block.text.startsWith("😀"));
    assert.equal(block.end - block.start, byteLength(block.text));
  });

  test("past the limit, the blocks written to longest ago go first", () => {
    const output = outputStateCreate();
    for (let i = 0; i <= OUTPUT_KEEP_BLOCKS; i++) outputMessageApply(output, message(i, 0, "."));
    assert.equal(output.blocks.size, OUTPUT_KEEP_BLOCKS);
    assert.equal(output.blocks.has(0), false);
    assert.ok(output.dirty.has(0));
  });
});

describe("drawing", () => {
  test("a block that only grew is appended to; another change redraws it", () => {
    const block = { start: 0, text: "one\ntwo\n" };
    assert.deepEqual(outputDrawPlan(block, { start: 0, length: 4 }), {
      action: "append",
      text: "two\n",
    });
    assert.deepEqual(outputDrawPlan(block, { start: 0, length: 8 }), { action: "none" });
    assert.deepEqual(outputDrawPlan({ start: 4, text: "two\n" }, { start: 0, length: 8 }), {
      action: "replace",
      text: "two\n",
    });
    assert.equal(outputDrawPlan(block, undefined).action, "replace");
  });

  test("the panel follows only a reader at its bottom", () => {
    assert.equal(atBottom(600, 400, 1000), true);
    assert.equal(atBottom(597, 400, 1000), true);
    assert.equal(atBottom(300, 400, 1000), false);
  });

  test("a block is headed by its chunk and the chunk's status", () => {
    assert.equal(
      outputHeading({ index: 2, status: "done" }, { status: "running" }),
      "Chunk 2 · running",
    );
    assert.equal(outputHeading({ index: 2, status: "done" }, undefined), "Chunk 2 · done");
    assert.equal(outputHeading({ index: 2, status: null }, undefined), "Chunk 2");
  });

  test("spans that touch merge; spans apart do not", () => {
    assert.deepEqual(spanMerge({ start: 0, text: "ab" }, { start: 2, text: "cd" }), {
      start: 0,
      text: "abcd",
    });
    assert.deepEqual(spanMerge({ start: 1, text: "bc" }, { start: 0, text: "abc" }), {
      start: 0,
      text: "abc",
    });
    assert.equal(spanMerge({ start: 0, text: "a" }, { start: 5, text: "f" }), null);
  });
});
