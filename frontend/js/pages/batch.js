// Batches: many photos (or one ZIP of them) analysed in the background, followed as they finish, one CSV for all.
import { fileSize, limits, megabytes, pollWhile, request } from "../api.js";
import { acceptDrops, alertBox, announce, field, fieldError, formatDate, h, onSubmit, plural } from "../dom.js";
import { downloadLink, leadLine, notFound, recentList, running, statusWord, uploadBar, uploadJob } from "./jobs.js";

const DEFAULT_MAX_PHOTOS = 200;
const RECENT = 10;
const isZip = (file) => /\.zip$/i.test(file.name) || /zip/.test(file.type);

export function batchPage(ctx) {
  const error = alertBox();
  const input = h("input", {
    type: "file", id: "batch-files", name: "files", multiple: true,
    accept: "image/*,.zip,application/zip", "aria-describedby": "batch-files-hint",
  });
  const hint = h("p", { class: "hint", id: "batch-files-hint" }, "Photos (JPEG, PNG, WebP…), as many as 200 at once, or one ZIP of photos.");
  const zone = h("div", { class: "dropzone" }, h("label", { for: "batch-files" }, h("strong", {}, "Choose photos or a ZIP"), " or drop them here"), hint, input);
  const chosenList = h("ul", { class: "file-list", "aria-label": "Chosen files" });
  const chosenSummary = h("p", { class: "hint", id: "chosen-summary" });
  const chosen = h("div", { class: "chosen", hidden: true }, chosenSummary, chosenList);
  const bar = uploadBar("batch-upload-label");
  const runButton = h("button", { type: "submit", class: "button", disabled: true }, "Upload and analyse");
  let files = [];
  let maxPhotos = DEFAULT_MAX_PHOTOS;

  function choose(list) {
    files = [...(list || [])];
    error.show("");
    runButton.disabled = files.length === 0;
    chosen.hidden = files.length === 0;
    const total = files.reduce((sum, file) => sum + file.size, 0);
    chosenSummary.textContent = `${plural(files.length, "file", "files")} chosen, ${fileSize(total)} in all.`;
    chosenList.replaceChildren(...files.map((file) => h("li", {}, h("span", { class: "name" }, file.name), " ", h("span", { class: "hint" }, isZip(file) ? `ZIP, ${fileSize(file.size)}` : fileSize(file.size)))));
  }

  acceptDrops(zone, input, (files) => choose(files));

  const form = h(
    "form",
    { class: "card stack", "aria-labelledby": "batch-title" },
    zone,
    chosen,
    field("Notes (optional)", { multiline: true, name: "notes", rows: 2 }, "Kept with every photo's result and with the batch."),
    error,
    bar.box,
    h("div", { class: "actions" }, runButton),
  );

  limits()
    .then((accepted) => {
      if (ctx.signal.aborted) return;
      form.notes.maxLength = accepted.notes_max_chars;
      maxPhotos = accepted.batch_max_photos || maxPhotos;
      const total = accepted.batch_max_bytes ? `, ${megabytes(accepted.batch_max_bytes)} in all` : "";
      hint.textContent = `Photos (JPEG, PNG, WebP…), up to ${maxPhotos} at once${total} and ${megabytes(accepted.upload_max_bytes)} each, or one ZIP of photos.`;
    })
    .catch(() => {});

  onSubmit(form, error, async () => {
    const archives = files.filter(isZip);
    const photos = files.filter((file) => !isZip(file));
    if (archives.length > 1) throw fieldError(input, "Choose one ZIP at a time (photos may go with it).");
    if (photos.length > maxPhotos) throw fieldError(input, `Choose at most ${maxPhotos} photos at once.`);
    const body = new FormData();
    for (const photo of photos) body.append("files", photo, photo.name);
    if (archives.length) body.append("archive", archives[0], archives[0].name);
    const notes = form.notes.value.trim();
    if (notes) body.append("notes", notes);
    await uploadJob(ctx, {
      path: "/batches", body, bar,
      waiting: "Queuing… ", refused: "These files cannot be analysed.",
      uploaded: "Uploaded. The photos are being analysed.", next: (created) => `/batches/${encodeURIComponent(created.id)}`,
    });
  }, input);

  return {
    title: "Analyse many photos",
    node: h(
      "section",
      {},
      h("h1", { id: "batch-title" }, "Analyse many photos"),
      h("p", { class: "lead" }, "Upload a set of photos or a ZIP: every face of every photo is analysed in the background, and one CSV holds them all."),
      form,
      recentList(ctx, {
        path: `/batches?page_size=${RECENT}`,
        title: "Your recent batches",
        empty: "No batches yet.",
        href: (batch) => `#/batches/${encodeURIComponent(batch.id)}`,
        text: (batch) => `${plural(batch.progress?.total ?? 0, "file", "files")}, ${statusWord(batch)}${batch.failed ? ` (${batch.failed} could not be analysed)` : ""}`,
      }),
    ),
  };
}

// ---- one batch ----------------------------------------------------------------------------------------

export async function batchResultPage(ctx) {
  const [id] = ctx.params;
  const path = `/batches/${encodeURIComponent(id)}`;
  let batch;
  try {
    batch = await request(path);
  } catch (failure) {
    // Another account's batch is a 404 too: "not found" and nothing more.
    if (failure.status !== 404 && failure.status !== 422) throw failure;
    return notFound("Batch not found", "There is no batch with this address among yours. It may belong to another account, or the link may be mistyped.", "#/batch", "Back to your batches");
  }

  const status = h("p", { class: "job-status", "data-status": batch.status });
  const progress = h("progress", { max: 1, value: 0, "aria-labelledby": "batch-progress-label" });
  const progressLabel = h("span", { id: "batch-progress-label" });
  const error = alertBox();
  const downloads = h("div", { class: "actions downloads" });
  const rows = new Map(); // item position → its row, updated in place so focus on a link survives a poll
  const tbody = h("tbody");
  const table = h(
    "div",
    { class: "table-scroll", role: "region", "aria-labelledby": "batch-table-caption", tabindex: "0" },
    h(
      "table",
      { class: "data-table batch-table" },
      h("caption", { id: "batch-table-caption" }, "Photos in this batch"),
      h("thead", {}, h("tr", {}, ["Photo", "Status", "Faces", "Result"].map((name) => h("th", { scope: "col" }, name)))),
      tbody,
    ),
  );
  let labels = null; // filename → labels of its faces, from the CSV once the batch is done
  let lastStatus = batch.status;

  function update(current) {
    batch = current;
    const done = current.progress?.done ?? 0;
    const total = current.progress?.total ?? current.items?.length ?? 0;
    progress.max = Math.max(total, 1);
    progress.value = done;
    progressLabel.textContent = `${done} of ${plural(total, "file", "files")} finished `;
    const failed = (current.items || []).filter((item) => item.error).length;
    status.dataset.status = current.status;
    status.textContent = {
      queued: "Waiting to start…",
      running: "Analysing the photos…",
      done: `Done: ${plural(done - failed, "photo", "photos")} analysed${failed ? `, ${failed} could not be` : ""}.`,
      failed: "The batch could not be analysed.",
    }[current.status] || current.status;
    error.show(current.status === "failed" ? current.error || "The batch could not be analysed. Please try again." : "");
    (current.items || []).forEach((item, position) => updateRow(position, item));
    if (current.status !== lastStatus) {
      lastStatus = current.status;
      if (current.status === "done") announce(`Batch done: ${done - failed} of ${total} photos analysed.`);
      else if (current.status === "failed") announce("The batch failed.");
    }
  }

  function updateRow(position, item) {
    let row = rows.get(position);
    if (!row) {
      row = { status: h("td"), faces: h("td"), result: h("td") };
      row.node = h("tr", {}, h("th", { scope: "row", class: "filename" }, item.filename), row.status, row.faces, row.result);
      rows.set(position, row);
      tbody.append(row.node);
    }
    const state = item.error ? "failed" : item.prediction_id ? "done" : item.status || "queued";
    row.node.dataset.status = state;
    row.status.textContent = { queued: "Waiting", running: "Analysing", done: "Done", failed: "Failed" }[state] || state;
    if (state === "failed") {
      row.faces.textContent = item.error || "Could not be analysed.";
      row.faces.className = "error-text";
    } else if (state === "done") {
      row.faces.className = "";
      row.faces.textContent = facesText(item, labels?.get(item.filename));
    } else {
      row.faces.textContent = "";
    }
    if (item.prediction_id && !row.result.firstChild) {
      row.result.append(h("a", { href: `#/results/${encodeURIComponent(item.prediction_id)}`, "aria-label": `Open the result of ${item.filename}` }, "Open result"));
    }
  }

  async function whenDone() {
    if (batch.status !== "done") return;
    try {
      const { link, blob } = await downloadLink(ctx, `${path}/results.csv`, `batch-${id}.csv`, "Download CSV");
      if (ctx.signal.aborted) return;
      downloads.replaceChildren(link);
      // The CSV names every face's label: the table shows them too.
      labels = labelsByFile(await blob.text());
      update(batch);
    } catch (failure) {
      error.show(`The CSV could not be prepared. ${failure.message}`);
    }
  }

  update(batch);
  if (running(batch)) {
    pollWhile(path, running, update, ctx.signal)
      .then((last) => last && whenDone())
      .catch((failure) => !ctx.signal.aborted && error.show(`The progress could not be followed. ${failure.message}`));
  } else {
    whenDone();
  }

  return {
    title: "Batch of photos",
    node: h(
      "section",
      { class: "stack-tight", "data-batch-id": batch.id },
      h("h1", {}, "Batch of photos"),
      leadLine(formatDate(batch.created_at), batch.notes),
      h("div", { class: "card stack" }, status, h("div", { class: "progress" }, progressLabel, progress), error, downloads),
      table,
      h("p", {}, h("a", { href: "#/batch" }, "Analyse more photos"), " · ", h("a", { href: "#/history" }, "All your results")),
    ),
  };
}

function facesText(item, faceLabels) {
  const count = faceLabels ? faceLabels.length : item.faces;
  if (count === 0) return "No face found";
  if (count === undefined || count === null) return "Analysed";
  const what = plural(count, "face", "faces");
  return faceLabels?.length ? `${what}: ${faceLabels.join(", ")}` : what;
}

/** filename → [label of each face] from the batch CSV (a photo without faces has one row, label empty). */
function labelsByFile(text) {
  const [header, ...rows] = parseCsv(text);
  const names = (header || []).map((name) => name.trim().toLowerCase());
  const fileAt = names.indexOf("filename");
  const labelAt = names.indexOf("label");
  const byFile = new Map();
  if (fileAt < 0 || labelAt < 0) return byFile;
  for (const row of rows) {
    const list = byFile.get(row[fileAt]) || [];
    if (row[labelAt]) list.push(row[labelAt]);
    byFile.set(row[fileAt], list);
  }
  return byFile;
}

/** RFC 4180 CSV: quoted fields may hold commas, quotes ("") and line breaks. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let value = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') value += text[++i];
      else if (char === '"') quoted = false;
      else value += char;
    } else if (char === '"') quoted = true;
    else if (char === ",") {
      row.push(value);
      value = "";
    } else if (char === "\n" || char === "\r") {
      if (char === "\r" && text[i + 1] === "\n") i++;
      row.push(value);
      rows.push(row);
      row = [];
      value = "";
    } else value += char;
  }
  if (value || row.length) rows.push([...row, value]);
  return rows;
}
