// The job page's chunk grid: one square per chunk, drawn on a canvas from the state's packed
// statuses (job_state.mjs `grid`), however many chunks a job has. The canvas is the size of
// the grid's visible box and stays put while the box scrolls (a spacer gives the box its
// full height), so a frame draws only the rows in view: about 1,500 squares, not 100,000
// elements. The layout is pure arithmetic (`gridLayout`, `cellAt`, `cellOrigin`,
// `gridMove`), tested by tests/js/chunk_grid.test.mjs; `ChunkGrid` draws.
import { CHUNK_STATUS_CODES, GRID_RETRIED, GRID_STATUS_MASK } from "./job_state.mjs";

// As the grid's squares were drawn in CSS before: 14 px squares, 3 px apart, 3 px padding.
export const CELL = 14;
export const GAP = 3;
export const PAD = 3;
const PITCH = CELL + GAP;

// Columns and rows of `total` squares in a box `width` CSS pixels wide, and the full height.
export function gridLayout(total, width) {
  const columns = Math.max(1, Math.floor((width - 2 * PAD + GAP) / PITCH));
  const rows = Math.ceil(total / columns);
  const height = rows ? 2 * PAD + rows * PITCH - GAP : 0;
  return { total, columns, rows, height };
}

// The chunk under a point of the grid's content (x, y in CSS pixels from its top left,
// scrolling included), or -1 in a gap, the padding or past the last chunk.
export function cellAt(layout, x, y) {
  const cx = x - PAD;
  const cy = y - PAD;
  if (cx < 0 || cy < 0) return -1;
  const column = Math.floor(cx / PITCH);
  const row = Math.floor(cy / PITCH);
  if (column >= layout.columns || cx - column * PITCH >= CELL || cy - row * PITCH >= CELL) {
    return -1;
  }
  const index = row * layout.columns + column;
  return index < layout.total ? index : -1;
}

// The top left corner of a chunk's square in the grid's content.
export function cellOrigin(layout, index) {
  const row = Math.floor(index / layout.columns);
  const column = index % layout.columns;
  return { x: PAD + column * PITCH, y: PAD + row * PITCH };
}

// Where a key moves the chosen chunk (null: not a key the grid takes). `page`: rows in view.
export function gridMove(layout, index, key, page = 1) {
  const last = layout.total - 1;
  const steps = {
    ArrowRight: 1,
    ArrowLeft: -1,
    ArrowDown: layout.columns,
    ArrowUp: -layout.columns,
    PageDown: layout.columns * Math.max(1, page),
    PageUp: -layout.columns * Math.max(1, page),
  };
  if (last < 0) return null;
  if (key === "Home") return 0;
  if (key === "End") return last;
  if (!(key in steps)) return null;
  const target = index + steps[key];
  if (target >= 0 && target <= last) return target;
  // Up or down past the first or last row stays put; the other keys stop at the ends.
  if (key === "ArrowUp" || key === "ArrowDown") return index;
  return Math.max(0, Math.min(last, target));
}

// The rows a box scrolled to `top` and `height` tall shows, whole or in part.
export function rowsInView(layout, top, height) {
  const first = Math.max(0, Math.floor((top - PAD) / PITCH));
  const last = Math.min(layout.rows - 1, Math.floor((top + height - PAD) / PITCH));
  return { first, last };
}

export class ChunkGrid {
  // box: the scrolling listbox; canvas and spacer inside it; colours: status → CSS colour,
  // plus `retried` (a ring inside a square).
  constructor(box, canvas, spacer, colours) {
    this.box = box;
    this.canvas = canvas;
    this.spacer = spacer;
    this.colours = colours;
    this.layout = gridLayout(0, 1);
    this.width = 0;
    this.viewHeight = 0;
  }

  // Lays the grid out again when the job's size or the box's width changed; true if it did.
  resize(total) {
    const width = this.box.clientWidth;
    if (total === this.layout.total && width === this.width) return false;
    this.width = width;
    this.layout = gridLayout(total, width);
    const most = parseFloat(getComputedStyle(this.box).maxHeight) || this.layout.height;
    this.viewHeight = Math.min(this.layout.height, most);
    const ratio = globalThis.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(this.viewHeight * ratio);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${this.viewHeight}px`;
    this.spacer.style.height = `${Math.max(0, this.layout.height - this.viewHeight)}px`;
    return true;
  }

  // Whether a changed chunk is in view (else nothing needs drawing for it).
  inView(index) {
    const { first, last } = rowsInView(this.layout, this.box.scrollTop, this.viewHeight);
    const row = Math.floor(index / this.layout.columns);
    return row >= first && row <= last;
  }

  // Draws the rows in view from the packed statuses, one fill per colour.
  draw(grid) {
    const context = this.canvas.getContext("2d");
    const ratio = this.canvas.width / (this.width || 1);
    const top = this.box.scrollTop;
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, this.width, this.viewHeight);
    const { first, last } = rowsInView(this.layout, top, this.viewHeight);
    const { columns } = this.layout;
    const end = Math.min(grid.length, (last + 1) * columns);
    const paths = CHUNK_STATUS_CODES.map(() => new Path2D());
    const retried = new Path2D();
    for (let index = first * columns; index < end; index++) {
      const byte = grid[index];
      const x = PAD + (index % columns) * PITCH;
      const y = PAD + Math.floor(index / columns) * PITCH - top;
      paths[byte & GRID_STATUS_MASK].rect(x, y, CELL, CELL);
      if (byte & GRID_RETRIED) retried.rect(x + 1, y + 1, CELL - 2, CELL - 2);
    }
    CHUNK_STATUS_CODES.forEach((status, code) => {
      context.fillStyle = this.colours[status];
      context.fill(paths[code]);
    });
    context.strokeStyle = this.colours.retried;
    context.lineWidth = 2;
    context.stroke(retried);
  }
}
