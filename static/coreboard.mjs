// What every page does once it is parsed: times in the viewer's time zone, and focus on
// the summary of a refused form (which links to each field). A module: it runs after the
// document is parsed.
import { byId, localiseTimes } from "./lib/dom.mjs";

localiseTimes(document);
const summary = byId("error-summary");
if (summary) summary.focus();
