// History: the person's past analyses, newest first, a page at a time.
import { request } from "../api.js";
import { formatDate, h } from "../dom.js";
import { labelText } from "./result.js";

const PAGE_SIZE = 10;

export async function historyPage(ctx) {
  // Page tokens are opaque cursors (not credentials), so they may sit in the address: back/forward work.
  const token = ctx.query.get("page") || "";
  const query = new URLSearchParams({ page_size: String(PAGE_SIZE) });
  if (token) query.set("page_token", token);
  const page = await request(`/predictions?${query}`);
  const items = page.items || [];
  const next = page.next_page_token || "";
  // Cursors only lead forward; remember where each page came from to offer "newer".
  if (next) ctx.app.historyPrev[next] = token;
  const previous = token ? ctx.app.historyPrev[token] : undefined;

  const pageLink = (pageToken) => (pageToken ? `#/history?page=${encodeURIComponent(pageToken)}` : "#/history");
  const pager = h(
    "nav",
    { class: "pager", "aria-label": "History pages" },
    token ? h("a", { class: "button secondary", href: pageLink(previous ?? "") }, previous === undefined ? "First page" : "Newer") : null,
    next ? h("a", { class: "button secondary older", href: pageLink(next) }, "Older") : null,
  );
  const total = typeof page.total === "number" ? page.total : null;

  return {
    title: "History",
    node: h(
      "section",
      {},
      h("h1", {}, "History"),
      total !== null ? h("p", { class: "lead" }, total === 1 ? "1 analysis in total." : `${total} analyses in total.`) : null,
      items.length
        ? h("ol", { class: "history" }, items.map((item) => h("li", {}, entry(item))))
        : h("p", { class: "notice info" }, token ? "No more analyses." : "No analyses yet. ", token ? null : h("a", { href: "#/analyze" }, "Analyse a photo")),
      pager.childElementCount ? pager : null,
    ),
  };
}

function entry(item) {
  const faces = item.faces || [];
  const labels = faces.map(labelText);
  const what = faces.length ? `${faces.length === 1 ? "1 face" : `${faces.length} faces`}: ${labels.join(", ")}` : "no face found";
  return h(
    "a",
    { class: "history-item card", href: `#/results/${encodeURIComponent(item.id)}` },
    h("strong", {}, formatDate(item.created_at) || "Analysis"),
    h("span", {}, item.filename ? `${item.filename}, ${what}` : what),
    item.notes ? h("span", { class: "hint" }, item.notes) : null,
  );
}
