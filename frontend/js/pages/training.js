// #/console/training: start a training job, the past jobs; #/console/training/{id}: one job followed live
// (status, progress, the training curve as it grows, the log tail, cancel).
import { pollWhile, request, requestText, sentence } from "../api.js";
import { alertBox, announce, field, formatDate, h, onSubmit } from "../dom.js";
import { adminOnly, confirmDialog, consoleNav, figure } from "./console.js";
import { running } from "./jobs.js";

const STATUS_WORDS = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
const LOG_LINES = 200;

export const trainingPage = adminOnly(async (ctx) => {
  const token = ctx.query.get("page") || "";
  const query = new URLSearchParams({ page_size: "20" });
  if (token) query.set("page_token", token);
  // The recipes and tunable fields come from the server (training.config is their one home).
  const [jobs, options] = await Promise.all([request(`/training-jobs?${query}`), request("/training-jobs/options")]);
  return {
    title: "Training",
    node: h(
      "section",
      {},
      h("h1", {}, "Training"),
      consoleNav("#/console/training"),
      startForm(ctx, options),
      jobList(jobs, token),
    ),
  };
});

// ---- the form --------------------------------------------------------------------------------------------

function startForm(ctx, options) {
  const error = alertBox();
  const fields = {};
  const named = (key, label, attrs, hint) => {
    const node = field(label, { ...attrs, id: `train-${key.replace(/\W/g, "-")}` }, hint);
    const input = node.querySelector("input");
    const message = h("p", { class: "field-error", id: `${input.id}-error`, hidden: true });
    node.append(message);
    fields[key] = { input, message };
    return node;
  };
  const recipes = h("datalist", { id: "train-recipes" }, options.recipes.map((name) => h("option", { value: name })));
  const keys = h("datalist", { id: "train-keys" }, options.overrides
    .filter((field) => !["epochs", "batch_size", "optim.lr"].includes(field.key))
    .map((field) => h("option", { value: field.key }, describe(field))));
  const rows = h("ul", { class: "override-rows", "aria-label": "Other settings" });
  let rowCount = 0;

  function addRow() {
    const n = ++rowCount;
    const key = h("input", { type: "text", id: `override-key-${n}`, list: "train-keys", autocomplete: "off", spellcheck: "false" });
    const value = h("input", { type: "text", id: `override-value-${n}`, autocomplete: "off", spellcheck: "false" });
    const message = h("p", { class: "field-error", id: `override-${n}-error`, hidden: true });
    const row = h(
      "li",
      { class: "override-row" },
      h("div", { class: "field" }, h("label", { for: key.id }, `Setting ${n}`), key),
      h("div", { class: "field" }, h("label", { for: value.id }, `Value ${n}`), value),
      h("button", { type: "button", class: "button secondary", "aria-label": `Remove setting ${n}`, onclick: () => { row.remove(); addButton.focus(); } }, "Remove"),
      message,
    );
    row.override = { key, value, message };
    rows.append(row);
    return key;
  }
  const addButton = h("button", { type: "button", class: "button secondary", onclick: () => addRow().focus() }, "Add a setting");

  const form = h(
    "form",
    { class: "card stack train-form", "aria-labelledby": "train-title", novalidate: true },
    h("h2", { id: "train-title" }, "Start a training job"),
    h(
      "div",
      { class: "form-grid" },
      named("recipe", "Recipe", { type: "text", name: "recipe", required: true, list: "train-recipes", autocomplete: "off", value: "jaffe_resnet18" }, "A recipe in training/configs, or a path to a .yaml."),
      named("dataset", "Dataset", { type: "text", name: "dataset", required: true, autocomplete: "off", value: "jaffe/labels.csv" }, "Its path under the platform's data root, e.g. jaffe/labels.csv or fer2013/fer2013.csv.gz."),
      named("gpus", "GPUs", { type: "number", name: "gpus", min: 0, max: 16, step: 1, value: 0 }, "0 trains on the CPU."),
      named("model_name", "Model name (optional)", { type: "text", name: "model_name", autocomplete: "off" }, "Empty: the platform's default model."),
    ),
    recipes,
    h(
      "fieldset",
      { class: "stack" },
      h("legend", {}, "Settings for this job"),
      h("p", { class: "hint" }, "Empty fields keep the recipe's value."),
      h(
        "div",
        { class: "form-grid" },
        named("epochs", "Epochs", { type: "number", name: "epochs", min: 1, max: 1000, step: 1 }, "1 to 1000."),
        named("batch_size", "Batch size", { type: "number", name: "batch_size", min: 1, max: 4096, step: 1 }, "1 to 4096."),
        named("optim.lr", "Learning rate", { type: "text", name: "lr", inputmode: "decimal" }, "Above 0, at most 10, e.g. 0.05."),
      ),
      h("p", { class: "hint", id: "override-hint" }, "Other recipe fields by name (e.g. optim.weight_decay = 0.0005, model.stem = s1pool, augment.flip = false)."),
      rows,
      keys,
      addButton,
    ),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button" }, "Start training")),
  );

  function clearErrors() {
    for (const { input, message } of [...Object.values(fields), ...[...rows.children].flatMap((row) => [row.override.key, row.override.value].map((input) => ({ input, message: row.override.message })))]) {
      message.hidden = true;
      message.textContent = "";
      input.removeAttribute("aria-invalid");
      const kept = (input.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && !id.endsWith("-error"));
      if (kept.length) input.setAttribute("aria-describedby", kept.join(" "));
      else input.removeAttribute("aria-describedby");
    }
  }

  function fieldFor(key) {
    if (fields[key]) return fields[key];
    const row = [...rows.children].find((candidate) => candidate.override.key.value.trim() === key);
    return row ? { input: row.override.key, message: row.override.message } : null;
  }

  function showAt(target, text) {
    target.message.textContent = text;
    target.message.hidden = false;
    target.input.setAttribute("aria-invalid", "true");
    const described = (target.input.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== target.message.id);
    target.input.setAttribute("aria-describedby", [...described, target.message.id].join(" "));
  }

  /** Each of a 422's messages at its field; returns the first field, or null when none could be named. */
  function placeErrors(failure) {
    const detail = Array.isArray(failure.detail) ? failure.detail : [];
    let first = null;
    for (const item of detail) {
      const loc = (item.loc || []).filter((part) => part !== "body");
      const msg = String(item.msg || "").replace(/^Value error, /, "");
      let key = null;
      if (loc[0] === "overrides" && loc[1]) key = String(loc[1]);
      else if (loc[0]) key = String(loc[0]);
      else if (/^override (\S+):/.test(msg)) key = /^override (\S+):/.exec(msg)[1];
      else if (/^dataset\b/.test(msg)) key = "dataset";
      else if (/^recipe\b/.test(msg)) key = "recipe";
      const target = key && fieldFor(key);
      if (target) {
        showAt(target, sentence(msg));
        first ||= target.input;
      }
    }
    return first;
  }

  onSubmit(form, error, async () => {
    clearErrors();
    const overrides = {};
    const local = [];
    const number = (key, integer) => {
      const raw = fields[key].input.value.trim();
      if (!raw) return;
      const value = Number(raw);
      if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) local.push([fields[key], integer ? "Enter a whole number." : "Enter a number, e.g. 0.05."]);
      else overrides[key] = value;
    };
    number("epochs", true);
    number("batch_size", true);
    number("optim.lr", false);
    for (const row of rows.children) {
      const key = row.override.key.value.trim();
      const raw = row.override.value.value.trim();
      if (!key && !raw) continue;
      const target = { input: row.override.key, message: row.override.message };
      if (!key) local.push([target, "Name the setting, e.g. optim.weight_decay."]);
      else if (!raw) local.push([{ input: row.override.value, message: row.override.message }, `Give ${key} a value.`]);
      else overrides[key] = typed(raw);
    }
    for (const key of ["recipe", "dataset"]) if (!fields[key].input.value.trim()) local.push([fields[key], `Enter the ${key}.`]);
    if (local.length) {
      local.forEach(([target, text]) => showAt(target, text));
      throw Object.assign(new Error("Please correct the marked fields."), { field: local[0][0].input });
    }
    const gpus = Number(fields.gpus.input.value || 0);
    let job;
    try {
      job = await request("/training-jobs", {
        method: "POST",
        json: {
          recipe: fields.recipe.input.value.trim(),
          dataset: fields.dataset.input.value.trim(),
          gpus: Number.isInteger(gpus) ? gpus : fields.gpus.input.value,
          model_name: fields.model_name.input.value.trim(),
          overrides,
        },
      });
    } catch (failure) {
      if (failure.status === 422) {
        const target = placeErrors(failure);
        // Said at the field; the box above the button only points there (a cause no field owns is said in full).
        failure.message = target ? "The job was not started: please correct the marked field." : `The job was not started. ${failure.message}`;
        if (target) failure.field = target;
      }
      throw failure;
    }
    announce("Training job started.");
    ctx.go(`/console/training/${encodeURIComponent(job.id)}`);
  });
  return form;
}

/** "0.05" → 0.05, "2" → 2, "true" → true, anything else stays text (the server checks the type). */
function typed(raw) {
  if (raw === "true" || raw === "false") return raw === "true";
  if (/^[+-]?\d+$/.test(raw)) return Number(raw);
  if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(raw)) return Number(raw);
  return raw.replace(/^"(.*)"$/, "$1");
}

// ---- past jobs -------------------------------------------------------------------------------------------

function jobList(page, token) {
  const items = page.items || [];
  const next = page.next_page_token || "";
  return h(
    "section",
    { class: "recent", "aria-labelledby": "jobs-title" },
    h("h2", { id: "jobs-title" }, "Training jobs"),
    items.length
      ? h(
          "div",
          { class: "table-scroll", role: "region", "aria-labelledby": "jobs-caption", tabindex: "0" },
          h(
            "table",
            { class: "data-table jobs-table" },
            h("caption", { id: "jobs-caption" }, `Newest first${typeof page.total === "number" ? ` (${page.total} in all)` : ""}`),
            h("thead", {}, h("tr", {}, ["Started", "Recipe and dataset", "Status", "Version made"].map((name) => h("th", { scope: "col" }, name)))),
            h(
              "tbody",
              {},
              items.map((job) => h(
                "tr",
                { "data-status": job.status, "data-job": job.id },
                h("th", { scope: "row" }, h("a", { href: `#/console/training/${encodeURIComponent(job.id)}` }, formatDate(job.created_at) || job.id)),
                h("td", {}, job.recipe, h("br"), h("span", { class: "hint" }, job.dataset)),
                h("td", {}, h("span", { class: `status-word status-${job.status}` }, STATUS_WORDS[job.status] || job.status), job.status === "failed" && job.message ? h("span", { class: "hint block" }, job.message) : null),
                h("td", {}, job.model_version ? h("a", { href: `#/console/models?version=${job.model_version}` }, `Version ${job.model_version}`) : "—"),
              )),
            ),
          ),
        )
      : h("p", { class: "notice info" }, token ? "No more jobs." : "No training jobs yet."),
    token || next
      ? h("nav", { class: "pager", "aria-label": "Job pages" },
          token ? h("a", { class: "button secondary", href: "#/console/training" }, "Newest jobs") : null,
          next ? h("a", { class: "button secondary older", href: `#/console/training?page=${encodeURIComponent(next)}` }, "Older jobs") : null)
      : null,
  );
}

// ---- one job ---------------------------------------------------------------------------------------------

export const trainingJobPage = adminOnly(async (ctx) => {
  const [id] = ctx.params;
  const path = `/training-jobs/${encodeURIComponent(id)}`;
  let job;
  try {
    job = await request(path);
  } catch (failure) {
    if (failure.status !== 404) throw failure;
    return {
      title: "Job not found",
      node: h("section", {}, h("h1", {}, "Training job not found"), consoleNav("#/console/training"),
        h("p", { class: "notice error", role: "alert" }, "There is no training job with this address."),
        h("p", {}, h("a", { href: "#/console/training" }, "All training jobs"))),
    };
  }

  const status = h("p", { class: "job-status" });
  const message = h("p", { class: "job-message" });
  const progress = h("progress", { max: 1, value: 0, "aria-labelledby": "job-progress-label" });
  const progressLabel = h("span", { id: "job-progress-label" });
  const made = h("p", { class: "job-made" });
  const error = alertBox();
  const cancelButton = h("button", { type: "button", class: "button secondary danger-outline", onclick: cancel }, "Cancel job…");
  const lossCanvas = h("canvas", { class: "curve", width: 420, height: 200, role: "img", "aria-labelledby": "curve-summary" });
  const accCanvas = h("canvas", { class: "curve", width: 420, height: 200, role: "img", "aria-labelledby": "curve-summary" });
  const summary = h("p", { id: "curve-summary", class: "curve-summary" });
  const historyBody = h("tbody");
  const log = h("pre", { class: "log", tabindex: "0", "aria-labelledby": "log-title" });
  const logNote = h("p", { class: "hint" });
  let lastStatus = job.status;
  let logBusy = false;

  async function cancel() {
    const ok = await confirmDialog({
      title: "Cancel this training job?",
      body: ["Its processes are stopped now and it makes no model version. What it has trained so far is lost; the log stays.", "This cannot be undone: a new job starts from the beginning."],
      confirm: "Cancel the job",
      danger: true,
    });
    if (!ok) return;
    try {
      update(await request(`${path}:cancel`, { method: "POST" }));
      announce("The training job was cancelled.");
    } catch (failure) {
      error.show(`The job could not be cancelled. ${failure.message}`);
    }
  }

  function update(current) {
    job = current;
    status.dataset.status = current.status;
    status.textContent = `Status: ${STATUS_WORDS[current.status] || current.status}`;
    message.textContent = current.message || "";
    message.hidden = !current.message;
    message.className = `job-message${current.status === "failed" ? " notice error" : ""}`;
    const p = current.progress;
    const epochs = p?.epochs || Number(current.overrides?.epochs) || 0;
    progress.max = Math.max(epochs, 1);
    progress.value = p?.epoch || 0;
    progressLabel.textContent = p ? `Epoch ${p.epoch} of ${p.epochs} ` : current.status === "queued" ? "Waiting to start " : "No epoch finished yet ";
    cancelButton.hidden = !running(current);
    made.replaceChildren(...(current.model_version
      ? ["It made ", h("a", { href: `#/console/models?version=${current.model_version}` }, `version ${current.model_version} of ${current.model_name || "the model"}`), ", evaluated on its test split."]
      : []));
    drawCurves(p?.history || []);
    if (current.status !== lastStatus) {
      lastStatus = current.status;
      announce(`Training job ${STATUS_WORDS[current.status]?.toLowerCase() || current.status}.`);
    }
    refreshLog();
  }

  function drawCurves(history) {
    drawChart(lossCanvas, history.map((e) => [e.epoch, e.train_loss]), { title: "Training loss", color: "#1f5fbf", epochs: job.progress?.epochs });
    drawChart(accCanvas, history.map((e) => [e.epoch, e.val_accuracy]), { title: "Validation accuracy", color: "#1d6b36", epochs: job.progress?.epochs, percent: true });
    summary.textContent = curveSummary(history, job.progress?.epochs);
    historyBody.replaceChildren(...history.map((e) => h("tr", {}, h("th", { scope: "row" }, String(e.epoch)), h("td", {}, e.train_loss.toFixed(4)), h("td", {}, figure(e.val_accuracy)))));
  }

  async function refreshLog() {
    if (logBusy) return;
    logBusy = true;
    try {
      const text = await requestText(`${path}/log?lines=${LOG_LINES}`);
      if (ctx.signal.aborted) return;
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.textContent = text || "(nothing logged yet)";
      if (atEnd) log.scrollTop = log.scrollHeight; // follow the tail unless the reader scrolled up
      logNote.textContent = `The last ${LOG_LINES} lines${running(job) ? ", refreshed while the job runs" : ""}.`;
    } catch (failure) {
      if (!ctx.signal.aborted) logNote.textContent = `The log could not be loaded. ${failure.message}`;
    } finally {
      logBusy = false;
    }
  }

  update(job);
  if (running(job)) {
    pollWhile(path, running, update, ctx.signal, 2000)
      .catch((failure) => !ctx.signal.aborted && error.show(`The progress could not be followed. ${failure.message}`));
  }

  const overrides = Object.entries(job.overrides || {});
  return {
    title: "Training job",
    node: h(
      "section",
      { class: "stack-tight", "data-job-id": job.id },
      h("h1", {}, "Training job"),
      consoleNav("#/console/training"),
      h("p", { class: "lead" }, [formatDate(job.created_at), `${job.recipe} on ${job.dataset}`, `${job.gpus} GPU${job.gpus === 1 ? "" : "s"}`, job.requested_by].filter(Boolean).join(" · ")),
      overrides.length ? h("p", { class: "hint" }, `Settings: ${overrides.map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ")}`) : null,
      h("div", { class: "card stack" }, status, message, h("div", { class: "progress" }, progressLabel, progress), made, error, h("div", { class: "actions" }, cancelButton)),
      h(
        "section",
        { class: "card stack", "aria-labelledby": "curve-title" },
        h("h2", { id: "curve-title" }, "Training curve"),
        summary,
        h("div", { class: "curves" }, h("figure", {}, lossCanvas, h("figcaption", {}, "Training loss per epoch")), h("figure", {}, accCanvas, h("figcaption", {}, "Validation accuracy per epoch"))),
        h("details", { class: "disclosure" }, h("summary", {}, "The figures per epoch"),
          h("div", { class: "table-scroll" }, h("table", { class: "data-table" }, h("thead", {}, h("tr", {}, ["Epoch", "Training loss", "Validation accuracy"].map((name) => h("th", { scope: "col" }, name)))), historyBody))),
      ),
      h("section", { class: "card stack", "aria-labelledby": "log-title" }, h("h2", { id: "log-title" }, "Log"), logNote, log),
      h("p", {}, h("a", { href: "#/console/training" }, "All training jobs")),
    ),
  };
});

function curveSummary(history, epochs) {
  if (!history.length) return "No epoch has finished yet: the curve appears as the job trains.";
  const last = history[history.length - 1];
  const best = history.reduce((a, b) => (b.val_accuracy > a.val_accuracy ? b : a));
  const first = history[0];
  return `After epoch ${last.epoch}${epochs ? ` of ${epochs}` : ""}: training loss ${last.train_loss.toFixed(3)}${history.length > 1 ? ` (${first.train_loss.toFixed(3)} after epoch ${first.epoch})` : ""}, validation accuracy ${figure(last.val_accuracy)}${history.length > 1 ? `, best ${figure(best.val_accuracy)} at epoch ${best.epoch}` : ""}.`;
}

/** A small line chart of [epoch, value] points: axes with a few ticks, drawn for the device's pixel ratio. */
function drawChart(canvas, points, { title, color, epochs, percent = false }) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 420;
  const height = canvas.clientHeight || 200;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  g.font = "12px system-ui, sans-serif";
  const left = 48, right = 12, top = 24, bottom = 30;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  g.fillStyle = "#1b2430";
  g.fillText(title, left, 15);
  const maxEpoch = Math.max(epochs || 0, points.length ? points[points.length - 1][0] : 1, 1);
  const values = points.map((p) => p[1]);
  let low = percent ? 0 : Math.min(...values, 0);
  let high = percent ? 1 : Math.max(...values, 1e-6) * 1.1;
  if (percent && values.length) {
    low = Math.max(0, Math.floor(Math.min(...values) * 10) / 10 - 0.1);
    high = Math.min(1, Math.ceil(Math.max(...values) * 10) / 10 + 0.05);
  }
  if (high <= low) high = low + 1;
  const x = (epoch) => left + (maxEpoch <= 1 ? plotW / 2 : ((epoch - 1) / (maxEpoch - 1)) * plotW);
  const y = (value) => top + plotH - ((value - low) / (high - low)) * plotH;
  // axes and ticks
  g.strokeStyle = "#d5dce5";
  g.fillStyle = "#4d5b6b";
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const value = low + ((high - low) * i) / 4;
    const at = y(value);
    g.beginPath();
    g.moveTo(left, at);
    g.lineTo(left + plotW, at);
    g.stroke();
    g.fillText(percent ? `${Math.round(value * 100)}%` : value.toFixed(2), 4, at + 4);
  }
  const step = Math.max(1, Math.ceil(maxEpoch / 8));
  for (let epoch = 1; epoch <= maxEpoch; epoch += step) g.fillText(String(epoch), x(epoch) - 3, height - 12);
  g.fillText("epoch", left + plotW - 30, height - 1);
  if (!points.length) {
    g.fillText("No epoch yet", left + plotW / 2 - 35, top + plotH / 2);
    return;
  }
  g.strokeStyle = color;
  g.fillStyle = color;
  g.lineWidth = 2;
  g.beginPath();
  points.forEach(([epoch, value], i) => (i ? g.lineTo(x(epoch), y(value)) : g.moveTo(x(epoch), y(value))));
  g.stroke();
  for (const [epoch, value] of points) {
    g.beginPath();
    g.arc(x(epoch), y(value), 3, 0, Math.PI * 2);
    g.fill();
  }
}

/** What a tunable field accepts, in words (the key list's hints). */
function describe(field) {
  if (field.choices.length) return `one of ${field.choices.join(", ")}`;
  if (field.type === "boolean") return "true or false";
  const low = field.minimum === null ? "" : `${field.exclusive_minimum ? ">" : "≥"} ${field.minimum}`;
  const high = field.maximum === null ? "" : `≤ ${field.maximum}`;
  return [field.type === "integer" ? "an integer" : "a number", low, high].filter(Boolean).join(" ");
}
