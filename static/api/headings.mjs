// Heading levels that never skip one (h1 then h3 reads as a missing section to a screen
// reader; axe: heading-order). Pure, so Node's test runner checks it without a DOM.

// The level each heading should be announced at, given their levels in document order: the
// same outline (what is under what, what are siblings), with no level skipped.
export function steppedLevels(levels) {
  const open = []; // the headings the current one may sit under: { level, stepped }
  return levels.map((level) => {
    let sibling = null;
    while (open.length && open.at(-1).level >= level) {
      const closed = open.pop();
      if (closed.level === level) sibling = closed;
    }
    const stepped = sibling ? sibling.stepped : open.length ? open.at(-1).stepped + 1 : 1;
    open.push({ level, stepped });
    return stepped;
  });
}
