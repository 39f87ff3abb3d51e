// What a job's chunks printed, as the job page keeps it: no DOM, so that Node's test runner
// can drive it (tests/js/output_state.test.mjs). The `chunk.output` message and the API's
// output answers (jobs/protocol.py, jobs/api) change it only here; static/jobs/job.mjs draws
// the Output panel and the chunk inspector from it.
//
// A block is one chunk's output: `text`, whose first character is at byte `start` of
// everything the chunk wrote, ending at byte `end`. Offsets count UTF-8 bytes, as the server
// does; the page appends a message's text only where it continues the block exactly, and
// otherwise asks the API for the chunk's output again (`refetch`).
import { formatBytes } from "../lib/format.mjs";

// What the page keeps (a long job must not fill the tab's memory): the last this many
// characters of a chunk, and the blocks of this many chunks, the least recently written to
// dropped first (the inspector fetches a dropped one again when it is asked for).
export const OUTPUT_KEEP_CHARS = 64 * 1024;
export const OUTPUT_KEEP_BLOCKS = 200;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function byteLength(text) {
  return encoder.encode(text).length;
}

export function outputStateCreate() {
  // `dirty`: chunk indices whose block changed (or went) since the page last drew them.
  return { blocks: new Map(), clock: 0, dirty: new Set() };
}

function blockPut(output, index, fields) {
  const known = output.blocks.get(index);
  output.clock += 1;
  const block = {
    index,
    status: null,
    // Creation order: the panel lists blocks as the chunks began to write.
    seq: known ? known.seq : output.clock,
    ...known,
    ...fields,
    touched: output.clock,
    version: (known?.version || 0) + 1,
  };
  if (block.text.length > OUTPUT_KEEP_CHARS) {
    let cut = block.text.length - OUTPUT_KEEP_CHARS;
    // Never split a surrogate pair: its halves are not text.
    const code = block.text.charCodeAt(cut);
    if (code >= 0xdc00 && code <= 0xdfff) cut += 1;
    block.start += byteLength(block.text.slice(0, cut));
    block.text = block.text.slice(cut);
  }
  block.end = block.start + byteLength(block.text);
  output.blocks.set(index, block);
  output.dirty.add(index);
  if (output.blocks.size > OUTPUT_KEEP_BLOCKS) blocksEvict(output);
  return block;
}

function blocksEvict(output) {
  const byAge = [...output.blocks.values()].sort((a, b) => a.touched - b.touched);
  for (const block of byAge.slice(0, output.blocks.size - OUTPUT_KEEP_BLOCKS)) {
    output.blocks.delete(block.index);
    output.dirty.add(block.index);
  }
}

// The union of two spans of the same output ({start, text}) that overlap or touch; null when
// a gap lies between them.
export function spanMerge(a, b) {
  const [low, high] = a.start <= b.start ? [a, b] : [b, a];
  const lowBytes = encoder.encode(low.text);
  const lowEnd = low.start + lowBytes.length;
  if (high.start > lowEnd) return null;
  const highBytes = encoder.encode(high.text);
  const highEnd = high.start + highBytes.length;
  if (highEnd <= lowEnd) return { start: low.start, text: low.text };
  const rest = highBytes.subarray(lowEnd - high.start);
  return { start: low.start, text: low.text + decoder.decode(rest) };
}

// Whether two spans of output hold the same bytes where they overlap (false: they come from
// different runs of the chunk; a retried chunk's output starts afresh).
export function spansAgree(a, b) {
  const [low, high] = a.start <= b.start ? [a, b] : [b, a];
  const lowBytes = encoder.encode(low.text);
  const highBytes = encoder.encode(high.text);
  const from = high.start - low.start;
  const length = Math.min(lowBytes.length - from, highBytes.length);
  for (let i = 0; i < length; i++) if (lowBytes[from + i] !== highBytes[i]) return false;
  return true;
}

export function outputForget(output, index) {
  if (output.blocks.delete(index)) output.dirty.add(index);
}

// A `chunk.output` message: new text at byte `offset` of the chunk's output. Answers
// `refetch: true` when the page misses what comes before it (a message it never got, or
// the text of a chunk's last message that was too much to send live: then `text` is empty
// and `offset` the output's whole length).
export function outputMessageApply(output, message) {
  const { index, offset, text } = message;
  let known = output.blocks.get(index);
  if (known && offset < known.end && text && !spansAgree(known, { start: offset, text })) {
    outputForget(output, index);
    known = undefined;
  }
  if (!known) {
    // Nothing before `cut_bytes` is kept anywhere: text from there on is all there is.
    if (offset > (message.cut_bytes || 0)) return { refetch: true };
    if (text) blockPut(output, index, { start: offset, text, cutBytes: message.cut_bytes || 0 });
    return { refetch: false };
  }
  if (!text) return { refetch: offset > known.end };
  if (offset === known.end) {
    blockPut(output, index, { text: known.text + text, cutBytes: message.cut_bytes || 0 });
    return { refetch: false };
  }
  const merged = spanMerge(known, { start: offset, text });
  if (merged === null) {
    // A gap: what lies between was sent while this page was not listening, unless the
    // server no longer has it either.
    if (offset > (message.cut_bytes || 0)) return { refetch: true };
    blockPut(output, index, { start: offset, text, cutBytes: message.cut_bytes || 0 });
    return { refetch: false };
  }
  if (merged.start !== known.start || merged.text.length !== known.text.length) {
    blockPut(output, index, { ...merged, cutBytes: message.cut_bytes || 0 });
  }
  return { refetch: false };
}

// One chunk's output as the API answers it (`GET /api/jobs/<id>/chunks/<index>/output/`, or
// one entry of `GET /api/jobs/<id>/output/`), merged with what messages brought meanwhile.
export function outputAnswerApply(output, answer) {
  const { index } = answer;
  const incoming = { start: answer.offset, text: answer.text || "" };
  const fields = { status: answer.status, cutBytes: answer.cut_bytes || 0 };
  const known = output.blocks.get(index);
  if (!known) {
    if (incoming.text) blockPut(output, index, { ...incoming, ...fields });
    return;
  }
  const merged = spanMerge(known, incoming);
  const incomingEnd = incoming.start + byteLength(incoming.text);
  // Apart: the answer is the newer truth unless the page already holds later text.
  const chosen = merged ?? (incomingEnd >= known.end ? incoming : known);
  blockPut(output, index, { ...chosen, ...fields });
}

export function outputJobAnswerApply(output, answer) {
  for (const chunk of answer.chunks || []) outputAnswerApply(output, chunk);
}

// The blocks the Output panel lists, in the order the chunks began to write; the last
// `limit` of them.
export function outputBlocks(output, limit = OUTPUT_KEEP_BLOCKS) {
  return [...output.blocks.values()].sort((a, b) => a.seq - b.seq).slice(-limit);
}

export function outputDirtyTake(output) {
  const dirty = output.dirty;
  output.dirty = new Set();
  return dirty;
}

// Said above a block whose beginning the page does not have ("" when it has all of it).
export function outputCutText(block) {
  return block.start > 0 ? `… ${formatBytes(block.start)} of earlier output cut …` : "";
}

export function outputHeading(block, chunk) {
  const status = chunk?.status || block.status;
  return status ? `Chunk ${block.index} · ${status}` : `Chunk ${block.index}`;
}

// How a page draws a block it drew before: `append` the new text when it only grew,
// otherwise `replace` all of it (`none`: nothing changed). `drawn` is {start, length} of the
// text on the page.
export function outputDrawPlan(block, drawn) {
  if (drawn && drawn.start === block.start && drawn.length === block.text.length) {
    return { action: "none" };
  }
  if (drawn && drawn.start === block.start && drawn.length < block.text.length) {
    return { action: "append", text: block.text.slice(drawn.length) };
  }
  return { action: "replace", text: block.text };
}

// A scrolled box follows new output only while its reader is at the bottom (a pixel or two
// of rounding allowed); a reader who scrolled up keeps their place.
export function atBottom(scrollTop, clientHeight, scrollHeight) {
  return scrollHeight - (scrollTop + clientHeight) <= 4;
}
