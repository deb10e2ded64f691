// One analysis result: the annotated image, every face's scores, and its PDF/JSON reports.
import { ApiError, fetchFile, request } from "../api.js";
import { alertBox, formatDate, h, percent, plural } from "../dom.js";

const POLL_FIRST_MS = 400;
const POLL_MAX_MS = 3000;
const REPORT_PATIENCE_MS = 3 * 60_000;

export async function resultPage(ctx) {
  const [id] = ctx.params;
  let prediction;
  try {
    prediction = await request(`/predictions/${encodeURIComponent(id)}`);
  } catch (error) {
    // Another account's result is a 404 too: say "not found" and nothing more.
    if (error.status !== 404 && error.status !== 422) throw error;
    return {
      title: "Result not found",
      node: h(
        "section",
        {},
        h("h1", {}, "Result not found"),
        h("p", { class: "notice error", role: "alert" }, "There is no result with this address in your history. It may belong to another account, or the link may be mistyped."),
        h("p", {}, h("a", { href: "#/history" }, "Back to your history")),
      ),
    };
  }
  return {
    title: "Result",
    node: h("section", {}, h("h1", {}, "Analysis result"), resultView(prediction, ctx), h("p", {}, h("a", { href: "#/history" }, "Back to your history"))),
  };
}

const names = (label) => label.charAt(0).toUpperCase() + label.slice(1);
/** A face's label as text, with "(uncertain)" when the model's top score is below its threshold. */
export const labelText = (face) => (face.uncertain ? `${face.label} (uncertain)` : face.label);

/** The result body, used by the result page and right after an analysis. `level` is its top heading level. */
export function resultView(prediction, ctx, level = 2) {
  const faces = prediction.faces || [];
  const hx = (offset, ...content) => h(`h${Math.min(level + offset, 6)}`, ...content);
  const image = h("img", {
    class: "annotated",
    alt: faces.length
      ? `The photo with ${plural(faces.length, "face", "faces")} outlined and labelled: ${faces.map(labelText).join(", ")}.`
      : "The photo; no face was found in it.",
  });
  const figure = h("figure", { class: "card figure", "aria-busy": "true" }, image, h("figcaption", {}, summary(prediction)));
  const thumbs = faces.map(() => h("span", { class: "thumb", "aria-hidden": "true" }));
  loadAnnotated(prediction, image, figure, thumbs, ctx);

  return h(
    "div",
    { class: "result stack", "data-prediction-id": prediction.id },
    prediction.message ? h("p", { class: "notice info" }, prediction.message) : null,
    h(
      "div",
      { class: "result-grid" },
      figure,
      h(
        "div",
        { class: "stack" },
        faces.length ? h("ol", { class: "faces", "aria-label": "Faces" }, faces.map((face, i) => h("li", {}, faceCard(face, i, thumbs[i], hx)))) : null,
        facts(prediction),
      ),
    ),
    reports(prediction, ctx, hx),
  );
}

function summary(prediction) {
  const faces = prediction.faces || [];
  if (!faces.length) return "No face found.";
  return `${plural(faces.length, "face", "faces")}: ${faces.map(labelText).join(", ")}`;
}

function facts(prediction) {
  const rows = [
    ["When", prediction.created_at && formatDate(prediction.created_at)],
    ["File", prediction.filename],
    ["Notes", prediction.notes],
    ["Model", prediction.model && `${prediction.model.name}, version ${prediction.model.version}`],
    ["Time taken", prediction.timings?.total_ms !== undefined && `${Math.round(prediction.timings.total_ms)} ms`],
  ].filter(([, value]) => value);
  return h("dl", { class: "details card" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

// The chart is decoration: each row also states its class and percentage as text.
function faceCard(face, index, thumb, hx) {
  const scores = Object.entries(face.scores || {});
  return h(
    "article",
    { class: "card face", "aria-labelledby": `face-${index + 1}` },
    h(
      "div",
      { class: "face-head" },
      thumb,
      hx(
        0,
        { id: `face-${index + 1}` },
        `Face ${index + 1}: ${face.label}`,
        h("span", { class: "score" }, ` ${percent(face.scores?.[face.label] ?? 0)}`),
        // A visible word, not only a colour; read out with the heading.
        face.uncertain ? [" ", h("span", { class: "badge uncertain" }, "uncertain")] : null,
      ),
    ),
    face.uncertain ? h("p", { class: "hint" }, "The model is not sure about this face: the label is its best guess.") : null,
    h(
      "ul",
      { class: "bars", "aria-label": `Scores of face ${index + 1}` },
      scores.map(([label, value]) => {
        const fill = h("span", { class: "fill" });
        fill.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`;
        return h(
          "li",
          { class: label === face.label ? "top" : "" },
          h("span", { class: "name" }, names(label)),
          h("span", { class: "bar", "aria-hidden": "true" }, fill),
          h("span", { class: "value" }, percent(value)),
        );
      }),
    ),
  );
}

// The image needs the bearer token, so it is fetched as a blob and shown through an object URL.
async function loadAnnotated(prediction, image, figure, thumbs, ctx) {
  const faces = prediction.faces || [];
  try {
    const response = await request(`/predictions/${encodeURIComponent(prediction.id)}/annotated.png`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    ctx.onLeave(() => URL.revokeObjectURL(url));
    image.addEventListener("load", () => {
      figure.removeAttribute("aria-busy");
      // The annotated copy may be drawn smaller than the upload; boxes are in the upload's pixels.
      const ratio = prediction.image_width ? image.naturalWidth / prediction.image_width : 1;
      faces.forEach((face, i) => cropThumb(thumbs[i], url, (face.box || []).map((v) => v * ratio), image.naturalWidth, image.naturalHeight));
    }, { once: true });
    image.src = url;
  } catch (error) {
    figure.removeAttribute("aria-busy");
    image.replaceWith(h("p", { class: "notice error", role: "alert" }, `The annotated image could not be loaded. ${error.message}`));
  }
}

// A face's own crop from the annotated image, so each chart can be matched to a face at a glance.
function cropThumb(thumb, url, box, width, height) {
  const [x, y, w, hgt] = box;
  if (!w || !hgt || !width || !height) return;
  const size = 64;
  const scale = size / Math.max(w, hgt);
  thumb.style.backgroundImage = `url("${url}")`;
  thumb.style.backgroundSize = `${width * scale}px ${height * scale}px`;
  thumb.style.backgroundPosition = `${-x * scale + (size - w * scale) / 2}px ${-y * scale + (size - hgt * scale) / 2}px`;
}

function reports(prediction, ctx, hx) {
  const status = h("p", { class: "report-status", role: "status" });
  const progress = h("progress", { hidden: true, "aria-label": "Report progress" });
  const error = alertBox();
  const saved = h("p", { class: "saved-links" });
  const buttons = ["pdf", "json"].map((format) =>
    h("button", { type: "button", class: "button secondary", "data-format": format, onclick: () => run(format) }, `Download ${format.toUpperCase()} report`),
  );

  async function run(format) {
    const label = format.toUpperCase();
    buttons.forEach((button) => (button.disabled = true));
    error.show("");
    progress.hidden = false;
    status.textContent = `Requesting the ${label} report…`;
    try {
      const link = await prepareReport(prediction.id, format, ctx, (text) => (status.textContent = `${label} report: ${text}`));
      if (!link) return; // the person left the page
      saved.append(link, " ");
      link.click();
      status.textContent = `${label} report ready: ${link.download}`;
    } catch (failure) {
      status.textContent = "";
      error.show(failure.message);
    } finally {
      progress.hidden = true;
      buttons.forEach((button) => (button.disabled = false));
    }
  }

  return h(
    "section",
    { class: "card stack reports", "aria-labelledby": `reports-${prediction.id}` },
    hx(0, { id: `reports-${prediction.id}` }, "Save as a report"),
    h("p", { class: "hint" }, "A PDF to read or print, or JSON for other programs. Reports are prepared on the server; this takes a few seconds."),
    h("div", { class: "actions" }, buttons),
    progress,
    status,
    error,
    saved,
  );
}

/** Requests a report, polls until it is done, downloads it with the token; returns a link to the file. */
async function prepareReport(predictionId, format, ctx, onStatus) {
  let report = await request("/reports", { method: "POST", json: { prediction_id: predictionId, format } });
  const giveUpAt = Date.now() + REPORT_PATIENCE_MS;
  let delay = POLL_FIRST_MS;
  while (report.status === "queued" || report.status === "running") {
    onStatus(report.status === "queued" ? "waiting its turn…" : "being prepared…");
    if (Date.now() > giveUpAt) throw new ApiError(504, "The report is taking longer than expected. Please try again later.");
    await new Promise((resolve) => setTimeout(resolve, delay));
    if (ctx.signal.aborted) return null;
    delay = Math.min(delay * 1.5, POLL_MAX_MS);
    report = await request(`/reports/${encodeURIComponent(report.id)}`);
  }
  if (report.status !== "done") {
    throw new ApiError(500, `The report could not be prepared${report.error ? `: ${report.error}` : ""}. Please try again.`);
  }
  onStatus("downloading…");
  const { blob, name } = await fetchFile(`/reports/${encodeURIComponent(report.id)}/download`, `fer-report-${predictionId}.${format}`);
  const url = URL.createObjectURL(blob);
  ctx.onLeave(() => URL.revokeObjectURL(url));
  return h("a", { href: url, download: name, class: "file-link" }, `Save ${name} again`);
}
