// What the batch and video pages share: uploading a job with its progress, the recent list, downloads.
import { fetchFile, request } from "../api.js";
import { announce, formatDate, h } from "../dom.js";

/**
 * Posts a batch or video upload with a progress bar, then goes to the job's page. `refused` prefixes the
 * server's reason when it turns the files down (400, 413, 415, 422).
 */
export async function uploadJob(ctx, { path, body, bar, waiting, refused, uploaded, next }) {
  bar.progress.value = 0;
  bar.label.textContent = "Uploading… ";
  bar.box.hidden = false;
  let created;
  try {
    created = await request(path, { method: "POST", body, onUploadProgress: (fraction) => showUpload(bar.progress, bar.label, fraction, waiting) });
  } catch (failure) {
    if ([400, 413, 415, 422].includes(failure.status)) failure.message = `${refused} ${failure.message}`;
    throw failure;
  } finally {
    bar.box.hidden = true;
  }
  if (ctx.signal.aborted) return;
  announce(uploaded);
  ctx.go(next(created));
}

/** The upload's progress bar; indeterminate once the bytes are sent and the server works. */
export function showUpload(progress, label, fraction, afterText) {
  if (fraction < 1) {
    progress.value = fraction;
    label.textContent = `Uploading… ${Math.round(fraction * 100)}% `;
  } else {
    progress.removeAttribute("value");
    label.textContent = afterText;
  }
}

/** The upload's progress bar, hidden until an upload starts: `{ box, label, progress }` as uploadJob takes it. */
export function uploadBar(labelId) {
  const progress = h("progress", { max: 1, value: 0, "aria-labelledby": labelId });
  const label = h("span", { id: labelId });
  const box = h("div", { class: "progress", hidden: true }, label, progress);
  return { box, label, progress };
}

/** A batch, video or training job still waiting or working. */
export const running = (job) => job.status === "queued" || job.status === "running";

export function statusWord(job) {
  return { queued: "waiting to start", running: "in progress", done: "done", failed: "failed" }[job.status] || job.status;
}

/** The person's recent batches or videos, newest first; loaded after the page shows, so a failure stays local. */
export function recentList(ctx, { path, title, empty, href, text }) {
  const list = h("div", { "aria-busy": "true" }, h("p", { class: "loading" }, "Loading…"));
  const section = h("section", { class: "recent", "aria-labelledby": "recent-title" }, h("h2", { id: "recent-title" }, title), list);
  request(path)
    .then((page) => {
      if (ctx.signal.aborted) return;
      const items = page.items || [];
      list.replaceChildren(
        items.length
          ? h("ol", { class: "history" }, items.map((item) => h("li", {}, h(
              "a",
              { class: "history-item card", href: href(item) },
              h("strong", {}, formatDate(item.created_at) || "Started"),
              h("span", {}, text(item)),
              item.notes ? h("span", { class: "hint" }, item.notes) : null,
            ))))
          : h("p", { class: "notice info" }, empty),
      );
    })
    .catch((failure) => list.replaceChildren(h("p", { class: "notice error", role: "alert" }, `The list could not be loaded. ${failure.message}`)))
    .finally(() => list.removeAttribute("aria-busy"));
  return section;
}

/** A "Download CSV"-style link to a file fetched with the token; the object URL is revoked on leaving. */
export async function downloadLink(ctx, path, fallbackName, text) {
  const { blob, name } = await fetchFile(path, fallbackName);
  const url = URL.createObjectURL(blob);
  ctx.onLeave(() => URL.revokeObjectURL(url));
  return { link: h("a", { class: "button secondary", href: url, download: name }, text), blob, name };
}

/** "date · notes" under a job's heading, or nothing. */
export function leadLine(...parts) {
  const text = parts.filter(Boolean).join(" · ");
  return text ? h("p", { class: "lead" }, text) : null;
}

export function notFound(title, text, back, backText) {
  return {
    title,
    node: h("section", {}, h("h1", {}, title), h("p", { class: "notice error", role: "alert" }, text), h("p", {}, h("a", { href: back }, backText))),
  };
}

