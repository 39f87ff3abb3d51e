// /api/docs/: what Swagger UI's markup lacks for people who use a screen reader or the
// keyboard, put right each time it renders (it re-renders as operations open and close).
// Swagger UI puts its title in an <h1>, the operation groups in <h3> and an operation's
// sections in <h4>, leaves the title block outside any landmark, a parameter's choice list
// without a name and its examples in boxes that scroll but take no focus.
import { steppedLevels } from "./headings.mjs";

const root = document.getElementById("swagger-ui");

function tidy() {
  const info = root.querySelector(".information-container");
  if (info && info.getAttribute("role") !== "banner") info.setAttribute("role", "banner");
  for (const select of root.querySelectorAll("tr[data-param-name] select:not([aria-label])")) {
    select.setAttribute("aria-label", select.closest("tr").dataset.paramName);
  }
  // An example box scrolls sideways at some width: reachable by keyboard to be scrolled.
  for (const box of root.querySelectorAll("pre:not([tabindex])")) {
    box.setAttribute("tabindex", "0");
  }
  const headings = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")];
  const levels = headings.map((heading) => Number(heading.tagName[1]));
  steppedLevels(levels).forEach((level, index) => {
    const heading = headings[index];
    const wanted = level === levels[index] ? null : String(level);
    if (heading.getAttribute("aria-level") !== wanted) {
      if (wanted === null) heading.removeAttribute("aria-level");
      else heading.setAttribute("aria-level", wanted);
    }
  });
}

// Attribute changes are not observed: the ones made here would call tidy() again.
new MutationObserver(tidy).observe(root, { childList: true, subtree: true });
tidy();
