// #/console/models: every model version with its figures, per-class bars, confusion matrix, card and
// report; which version serves now; promote and roll back behind a confirmation; two versions compared.
import { fetchFile, request } from "../api.js";
import { alertBox, announce, capital, formatDate, h } from "../dom.js";
import { adminOnly, confirmDialog, consoleNav, figure } from "./console.js";

export const modelsPage = adminOnly(async (ctx) => {
  const listed = await request("/models");
  const versions = (listed.models || []).slice().sort((a, b) => a.name.localeCompare(b.name) || b.version - a.version);
  const names = [...new Set(versions.map((v) => v.name))];
  const focusVersion = Number(ctx.query.get("version")) || null;
  const status = alertBox();

  async function act(work, doneText) {
    status.show("");
    try {
      await work();
      const text = typeof doneText === "function" ? doneText() : doneText;
      announce(text);
      ctx.app.consoleNotice = text; // shown once by the page drawn again with the new state
      ctx.go("/console/models");
    } catch (failure) {
      status.show(failure.message);
    }
  }

  async function promote(version) {
    const serving = versions.find((v) => v.name === version.name && v.promoted);
    const ok = await confirmDialog({
      title: `Promote version ${version.version}?`,
      body: [
        `Every new prediction of ${version.name} will be answered by version ${version.version}${serving ? ` instead of version ${serving.version}` : ""}, from now on, for every user.`,
        `Its test accuracy is ${figure(testMetrics(version)?.accuracy)}${serving ? ` (version ${serving.version}: ${figure(testMetrics(serving)?.accuracy)})` : ""}. Roll back serves the previous version again.`,
      ],
      confirm: `Promote version ${version.version}`,
    });
    if (ok) await act(() => request(`/models/${encodeURIComponent(version.name)}/versions/${version.version}:promote`, { method: "POST" }), `Version ${version.version} of ${version.name} now serves.`);
  }

  async function rollback(name) {
    const serving = versions.find((v) => v.name === name && v.promoted);
    const ok = await confirmDialog({
      title: `Roll back ${name}?`,
      body: [
        `Version ${serving ? serving.version : "promoted now"} stops answering predictions of ${name}: the version promoted before it serves again, from now on, for every user.`,
        "Nothing is deleted; you can promote this version again later.",
      ],
      confirm: "Roll back",
      danger: true,
    });
    if (!ok) return;
    let served = null;
    await act(async () => {
      served = await request(`/models/${encodeURIComponent(name)}:rollback`, { method: "POST" });
    }, () => `Rolled back: version ${served.version} of ${name} serves again.`);
  }

  const done = ctx.app.consoleNotice;
  ctx.app.consoleNotice = null;
  const sections = names.map((name) => {
    const own = versions.filter((v) => v.name === name);
    const serving = own.find((v) => v.promoted);
    return h(
      "section",
      { class: "stack-tight model", "aria-labelledby": `model-${name}` },
      h("h2", { id: `model-${name}` }, name),
      h(
        "div",
        { class: "card serving" },
        h("p", { class: "serving-now", "data-version": serving?.version ?? "" }, serving ? `Serving now: version ${serving.version}` : "No version is promoted: predictions use the platform's default."),
        h("div", { class: "actions" }, h("button", { type: "button", class: "button secondary", onclick: () => rollback(name), disabled: own.length < 2 }, "Roll back…")),
      ),
      compareSection(name, own),
      h("h3", {}, `Versions (${own.length})`),
      h("ol", { class: "versions" }, own.map((version) => h("li", {}, versionCard(ctx, version, promote, version.version === focusVersion)))),
    );
  });

  const node = h(
    "section",
    {},
    h("h1", {}, "Models"),
    consoleNav("#/console/models"),
    done ? h("p", { class: "notice success", role: "status" }, done) : null,
    status,
    versions.length ? sections : h("p", { class: "notice info" }, "No model versions in the repository."),
  );
  if (focusVersion) {
    setTimeout(() => document.getElementById(`version-${names[0]}-${focusVersion}`)?.scrollIntoView({ block: "start" }), 0);
  }
  return { title: "Models", node };
});

/** The figures a version was measured with: its recipe's test split, else "test", else the first plain split. */
function testSplit(version) {
  const metrics = version.metadata?.metrics || {};
  const usable = (key) => metrics[key] && typeof metrics[key].accuracy === "number";
  const named = version.metadata?.training_config?.data?.test_split;
  if (named && usable(named)) return named;
  if (usable("test")) return "test";
  return Object.keys(metrics).find((key) => usable(key) && !key.includes("+")) || Object.keys(metrics).find(usable) || null;
}

function testMetrics(version) {
  const split = testSplit(version);
  return split ? version.metadata.metrics[split] : null;
}

function versionCard(ctx, version, promote, focused) {
  const meta = version.metadata || {};
  const split = testSplit(version);
  const metrics = split ? meta.metrics[split] : null;
  const extra = meta.extra || {};
  const epochs = typeof extra.epochs_trained === "number"
    ? `${extra.epochs_trained}${typeof extra.best_epoch === "number" ? ` (best at epoch ${extra.best_epoch})` : ""}`
    : "not measured";
  const id = `version-${version.name}-${version.version}`;
  const facts = [
    ["Test accuracy", metrics ? `${figure(metrics.accuracy)}` : "not measured"],
    ["Macro-F1", figure(metrics?.macro_f1)],
    ["Measured on", metrics ? `${split}${metrics.n ? `, ${metrics.n} images` : ""}` : "not measured"],
    ["Epochs trained", epochs],
    ["Validation accuracy", figure(extra.validation_accuracy)],
    ["Architecture", meta.architecture || "not recorded"],
    ["Created", meta.created ? formatDate(meta.created) : "not recorded"],
    ["State", stateWord(version.state)],
  ];
  const matrix = h("figure", { class: "figure matrix", "aria-busy": "true" }, h("p", { class: "loading" }, "Loading the confusion matrix…"));
  loadMatrix(ctx, version, metrics, split, matrix);
  return h(
    "article",
    { class: `card version${version.promoted ? " promoted" : ""}${focused ? " focused" : ""}`, id, "aria-labelledby": `${id}-title`, "data-version": version.version },
    h(
      "div",
      { class: "version-head" },
      h("h4", { id: `${id}-title` }, `Version ${version.version}`, version.promoted ? h("span", { class: "badge serving-badge" }, "Serving now") : null),
      version.promoted ? null : h("button", { type: "button", class: "button", onclick: () => promote(version) }, `Promote version ${version.version}…`),
    ),
    h("dl", { class: "details figures" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    metrics?.per_class ? perClass(metrics, `${id}-recall`) : h("p", { class: "hint" }, "Per-class figures: not measured."),
    h("details", { class: "disclosure" }, h("summary", {}, "Confusion matrix"), matrix),
    markdownFile(ctx, version, "card", "Model card"),
    markdownFile(ctx, version, "report", "Evaluation report"),
  );
}

function stateWord(state) {
  return { available: "On disk (not loaded)", loading: "Loading", ready: "Loaded in the model server", unavailable: "Unavailable" }[state] || state;
}

function perClass(metrics, id) {
  const classes = metrics.classes || Object.keys(metrics.per_class);
  return h(
    "div",
    {},
    h("h5", { id }, "Recall per class (share of each class's test images it got right)"),
    h(
      "ul",
      { class: "bars", "aria-labelledby": id },
      classes.map((name) => {
        const value = metrics.per_class[name]?.recall;
        const fill = h("span", { class: "fill" });
        fill.style.width = `${Math.max(0, Math.min(1, value || 0)) * 100}%`;
        return h("li", {}, h("span", { class: "name" }, capital(name)), h("span", { class: "bar", "aria-hidden": "true" }, fill), h("span", { class: "value" }, figure(value)));
      }),
    ),
  );
}

async function loadMatrix(ctx, version, metrics, split, figureNode) {
  try {
    const { blob } = await fetchFile(`/models/${encodeURIComponent(version.name)}/versions/${version.version}/confusion_matrix.png`, "confusion_matrix.png");
    if (ctx.signal.aborted) return;
    const url = URL.createObjectURL(blob);
    ctx.onLeave(() => URL.revokeObjectURL(url));
    figureNode.replaceChildren(
      h("img", { src: url, class: "annotated", alt: `The confusion matrix published with version ${version.version} (its title names the test set): rows are the true class, columns the predicted one.${metrics?.confusion_matrix ? ` The table below gives the counts on ${split}.` : ""}` }),
      h("figcaption", {}, "The published picture. Rows: true class; columns: predicted class."),
      metrics?.confusion_matrix ? matrixTable({ ...metrics, split }) : null,
    );
  } catch (failure) {
    if (ctx.signal.aborted) return;
    figureNode.replaceChildren(
      h("p", { class: "notice info" }, failure.status === 404 ? "No confusion matrix was published for this version." : `The confusion matrix could not be loaded. ${failure.message}`),
      metrics?.confusion_matrix ? matrixTable({ ...metrics, split }) : null,
    );
  } finally {
    figureNode.removeAttribute("aria-busy");
  }
}

function matrixTable(metrics) {
  const classes = metrics.classes || [];
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { class: "data-table matrix-table" },
      h("caption", {}, `Counts on ${metrics.split || "the test set"}: true class (rows) by predicted class (columns)`),
      h("thead", {}, h("tr", {}, h("td"), classes.map((name) => h("th", { scope: "col" }, capital(name))))),
      h("tbody", {}, metrics.confusion_matrix.map((row, i) => h("tr", {}, h("th", { scope: "row" }, capital(classes[i])), row.map((count, j) => h("td", { class: i === j ? "diagonal" : "" }, String(count)))))),
    ),
  );
}

/** The card or the report, loaded when opened: the rendered page in a sandboxed frame, and the markdown. */
function markdownFile(ctx, version, kind, label) {
  const base = `/models/${encodeURIComponent(version.name)}/versions/${version.version}/${kind}`;
  const body = h("div", { class: "markdown-file", "aria-busy": "true" }, h("p", { class: "loading" }, "Loading…"));
  const details = h("details", { class: "disclosure" }, h("summary", {}, label), body);
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    try {
      const [page, raw] = await Promise.all([fetchFile(base, `${kind}.html`), fetchFile(`${base}?format=raw`, `${version.name}-${version.version}-${kind}.md`)]);
      if (ctx.signal.aborted) return;
      // The server's page runs nothing; the frame is sandboxed anyway, on an opaque origin.
      const pageUrl = URL.createObjectURL(new Blob([page.blob], { type: "text/html" }));
      const rawUrl = URL.createObjectURL(raw.blob);
      ctx.onLeave(() => {
        URL.revokeObjectURL(pageUrl);
        URL.revokeObjectURL(rawUrl);
      });
      body.replaceChildren(
        h("iframe", { src: pageUrl, sandbox: "", class: "markdown-frame", title: `${label} of ${version.name} version ${version.version}` }),
        h("p", {}, h("a", { href: rawUrl, download: raw.name }, `Download the ${label.toLowerCase()} (markdown)`)),
      );
    } catch (failure) {
      body.replaceChildren(h("p", { class: "notice info" }, failure.status === 404 ? `This version has no ${label.toLowerCase()}.` : `The ${label.toLowerCase()} could not be loaded. ${failure.message}`));
    } finally {
      body.removeAttribute("aria-busy");
    }
  });
  return details;
}

// ---- two versions side by side --------------------------------------------------------------------------

function compareSection(name, own) {
  if (own.length < 2) return null;
  const idBase = `compare-${name}`;
  const choice = (label, suffix, selected) => {
    const select = h("select", { id: `${idBase}-${suffix}` }, own.map((v) => h("option", { value: v.version, selected: v.version === selected }, `Version ${v.version}${v.promoted ? " (serving)" : ""}`)));
    return { select, node: h("div", { class: "field" }, h("label", { for: select.id }, label), select) };
  };
  const serving = own.find((v) => v.promoted) || own[own.length - 1];
  const other = own.find((v) => v !== serving) || own[0];
  const a = choice("Version A", "a", Math.min(serving.version, other.version));
  const b = choice("Version B", "b", Math.max(serving.version, other.version));
  const output = h("div", { class: "comparison", "aria-live": "polite" });
  const draw = () => output.replaceChildren(comparisonTable(own.find((v) => String(v.version) === a.select.value), own.find((v) => String(v.version) === b.select.value)));
  a.select.addEventListener("change", draw);
  b.select.addEventListener("change", draw);
  draw();
  return h(
    "section",
    { class: "card stack compare", "aria-labelledby": `${idBase}-title` },
    h("h3", { id: `${idBase}-title` }, "Compare two versions"),
    h("div", { class: "compare-choices" }, a.node, b.node),
    output,
  );
}

function comparisonTable(a, b) {
  if (!a || !b) return h("p");
  const splitA = testSplit(a);
  const splitB = testSplit(b);
  const ma = splitA ? a.metadata.metrics[splitA] : null;
  const mb = splitB ? b.metadata.metrics[splitB] : null;
  const classes = (ma?.classes || mb?.classes || []).slice();
  for (const name of mb?.classes || []) if (!classes.includes(name)) classes.push(name);
  const rows = [
    ["Test accuracy", ma?.accuracy, mb?.accuracy],
    ["Macro-F1", ma?.macro_f1, mb?.macro_f1],
    ...classes.map((name) => [`Recall: ${name}`, ma?.per_class?.[name]?.recall, mb?.per_class?.[name]?.recall]),
  ];
  return h(
    "div",
    {},
    splitA !== splitB ? h("p", { class: "notice info" }, `The two versions were measured on different test sets (${splitA || "none"} and ${splitB || "none"}): the figures are not directly comparable.`) : null,
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { class: "data-table compare-table" },
        h("caption", {}, `Version ${a.version} (A) and version ${b.version} (B)${splitA && splitA === splitB ? `, on ${splitA}` : ""}`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Figure"), h("th", { scope: "col" }, `A: version ${a.version}`), h("th", { scope: "col" }, `B: version ${b.version}`), h("th", { scope: "col" }, "B − A"))),
        h("tbody", {}, rows.map(([label, x, y]) => h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, figure(x)), h("td", {}, figure(y)), difference(x, y)))),
      ),
    ),
  );
}

/** The difference in percentage points, said in words and with a sign (never colour alone). */
function difference(x, y) {
  if (typeof x !== "number" || typeof y !== "number") return h("td", { class: "diff" }, "—");
  const points = (y - x) * 100;
  if (Math.abs(points) < 0.05) return h("td", { class: "diff same", "data-diff": "same" }, "same");
  const better = points > 0;
  return h(
    "td",
    { class: `diff ${better ? "better" : "worse"}`, "data-diff": better ? "better" : "worse" },
    h("span", { "aria-hidden": "true" }, better ? "▲ " : "▼ "),
    `${better ? "+" : "−"}${Math.abs(points).toFixed(1)} points, ${better ? "better" : "worse"}`,
  );
}
