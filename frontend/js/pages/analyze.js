// Analysis: choose or drop a photo, preview it, add notes, run, watch progress, see the result.
import { fileSize, limits, megabytes, request } from "../api.js";
import { acceptDrops, alertBox, announce, field, h, onSubmit } from "../dom.js";
import { showUpload, uploadBar } from "./jobs.js";
import { resultView } from "./result.js";

export function analyzePage(ctx) {
  const error = alertBox();
  const input = h("input", { type: "file", id: "photo", name: "file", accept: "image/*", "aria-describedby": "photo-hint" });
  const zone = h(
    "div",
    { class: "dropzone" },
    h("label", { for: "photo" }, h("strong", {}, "Choose a photo"), " or drop it here"),
    h("p", { class: "hint", id: "photo-hint" }, "JPEG, PNG, WebP, BMP, TIFF or GIF. Faces should be roughly frontal."),
    input,
  );
  const preview = h("div", { class: "preview", hidden: true });
  const bar = uploadBar("progress-label");
  const runButton = h("button", { type: "submit", class: "button", disabled: true }, "Analyse");
  const output = h("div", { class: "output" });
  let file = null;
  let previewUrl = null;
  ctx.onLeave(() => previewUrl && URL.revokeObjectURL(previewUrl));

  function choose(chosen) {
    file = chosen || null;
    error.show("");
    runButton.disabled = !file;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    if (!file) {
      preview.hidden = true;
      return;
    }
    previewUrl = URL.createObjectURL(file);
    const caption = h("figcaption", {}, `${file.name} (${fileSize(file.size)})`);
    const image = h("img", { src: previewUrl, alt: `Preview of ${file.name}` });
    // The server has the last word on what is an image; the preview only says what the browser sees.
    image.addEventListener("error", () => image.replaceWith(h("p", { class: "hint" }, "No preview: the browser cannot show this file as an image.")));
    preview.replaceChildren(h("figure", {}, image, caption));
    preview.hidden = false;
  }

  acceptDrops(zone, input, (files) => choose(files[0]));

  const form = h(
    "form",
    { class: "card stack", "aria-labelledby": "analyze-title" },
    zone,
    preview,
    field("Notes (optional)", { multiline: true, name: "notes", rows: 3 }, "Kept with the result and printed in its reports."),
    h(
      "div",
      { class: "check" },
      h("input", { type: "checkbox", id: "whole-face", name: "whole_face", "aria-describedby": "whole-face-hint" }),
      h("label", { for: "whole-face" }, "The photo is one face"),
      h("p", { class: "hint", id: "whole-face-hint" }, "For a close crop of a single face: the whole image is analysed as that face, without searching for faces."),
    ),
    error,
    bar.box,
    h("div", { class: "actions" }, runButton),
  );

  // The limits come from the API (one home for them); the form works without them, the server checks anyway.
  limits()
    .then((accepted) => {
      if (ctx.signal.aborted) return;
      form.notes.maxLength = accepted.notes_max_chars;
      zone.querySelector("#photo-hint").textContent =
        `JPEG, PNG, WebP, BMP, TIFF or GIF, up to ${megabytes(accepted.upload_max_bytes)}. Faces should be roughly frontal.`;
    })
    .catch(() => {});

  onSubmit(form, error, async () => {
    if (!file) return;
    const body = new FormData();
    body.append("file", file, file.name);
    const notes = form.notes.value.trim();
    if (notes) body.append("notes", notes);
    body.append("mode", form.whole_face.checked ? "face" : "detect");
    output.replaceChildren();
    bar.progress.value = 0;
    bar.label.textContent = "Uploading… ";
    bar.box.hidden = false;
    let prediction;
    try {
      prediction = await request("/predictions", {
        method: "POST",
        body,
        onUploadProgress: (fraction) => showUpload(bar.progress, bar.label, fraction, "Analysing… "),
      });
    } catch (failure) {
      // Input the server refused is about the file: say so in front of its own reason.
      if ([400, 415, 422].includes(failure.status)) failure.message = `This file cannot be analysed. ${failure.message}`;
      throw failure;
    } finally {
      bar.box.hidden = true;
    }
    if (ctx.signal.aborted) return;
    const heading = h("h2", { tabindex: "-1" }, "Result");
    output.replaceChildren(heading, resultView(prediction, ctx, 3), h("p", {}, h("a", { href: `#/results/${encodeURIComponent(prediction.id)}` }, "Permanent link to this result")));
    const found = prediction.faces?.length || 0;
    announce(found ? `Analysis done: ${found === 1 ? "1 face" : `${found} faces`} found.` : "Analysis done: no face found.");
    heading.focus();
  });

  return {
    title: "Analyse a photo",
    node: h(
      "section",
      {},
      h("h1", { id: "analyze-title" }, "Analyse a photo"),
      h("p", { class: "lead" }, "The platform finds every face and tells which of seven expressions it shows: angry, disgust, fear, happy, sad, surprise or neutral."),
      form,
      output,
    ),
  };
}
