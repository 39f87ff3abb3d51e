// What every page does once it is parsed: times in the viewer's time zone, tables that
// stack on a phone labelled, and focus on the summary of a refused form (which links to
// each field). A module: it runs after the
// document is parsed.
import { byId, localiseTimes, tablesStack } from "./lib/dom.mjs";

localiseTimes(document);
tablesStack(document);
const summary = byId("error-summary");
if (summary) summary.focus();
