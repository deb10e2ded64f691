// Videos: upload one, follow its analysis, then read each face's expressions over time (picture, table, CSV).
import { fetchFile, fileSize, limits, megabytes, pollWhile, request } from "../api.js";
import { acceptDrops, alertBox, announce, capital, field, fieldError, formatDate, h, onSubmit, percent } from "../dom.js";
import { downloadLink, leadLine, notFound, recentList, running, statusWord, uploadBar, uploadJob } from "./jobs.js";

const FPS = { default: 4, min: 0.5, max: 15 };
const RECENT = 10;
const VIDEO_TYPES = /\.(mp4|m4v|webm|mkv|mov|avi)$/i;

export function videoPage(ctx) {
  const error = alertBox();
  const input = h("input", {
    type: "file", id: "video-file", name: "file",
    accept: "video/mp4,video/webm,video/quicktime,video/x-msvideo,.mp4,.m4v,.webm,.mov,.avi", "aria-describedby": "video-file-hint",
  });
  const hint = h("p", { class: "hint", id: "video-file-hint" }, "MP4, WebM, MOV or AVI, up to 10 minutes.");
  const zone = h("div", { class: "dropzone" }, h("label", { for: "video-file" }, h("strong", {}, "Choose a video"), " or drop it here"), hint, input);
  const chosen = h("p", { class: "hint chosen", hidden: true });
  const fps = field(
    "Frames analysed per second",
    { type: "number", name: "fps", id: "video-fps", value: String(FPS.default), min: String(FPS.min), max: String(FPS.max), step: "0.5", inputmode: "decimal", required: true },
    `More frames follow quicker changes and take longer. From ${FPS.min} to ${FPS.max}.`,
  );
  const bar = uploadBar("video-upload-label");
  const runButton = h("button", { type: "submit", class: "button", disabled: true }, "Upload and analyse");
  let file = null;

  function choose(chosenFile) {
    file = chosenFile || null;
    error.show("");
    runButton.disabled = !file;
    chosen.hidden = !file;
    chosen.textContent = file ? `${file.name} (${fileSize(file.size)})` : "";
  }
  acceptDrops(zone, input, (files) => choose(files[0]));

  const form = h(
    "form",
    // Our own check of the frame rate says what to fix in the page's words (and moves focus there).
    { class: "card stack", "aria-labelledby": "video-title", novalidate: true },
    zone,
    chosen,
    fps,
    field("Notes (optional)", { multiline: true, name: "notes", rows: 2 }, "Kept with the video's analysis and printed in its reports."),
    error,
    bar.box,
    h("div", { class: "actions" }, runButton),
  );
  const fpsInput = form.querySelector("#video-fps");

  limits()
    .then((accepted) => {
      if (ctx.signal.aborted) return;
      form.notes.maxLength = accepted.notes_max_chars;
      if (accepted.video_max_fps) fpsInput.max = String(accepted.video_max_fps);
      if (accepted.video_default_fps && fpsInput.value === String(FPS.default)) fpsInput.value = String(accepted.video_default_fps);
      const size = accepted.video_max_bytes ? `, ${megabytes(accepted.video_max_bytes)}` : "";
      const minutes = accepted.video_max_seconds ? Math.round(accepted.video_max_seconds / 60) : 10;
      hint.textContent = `MP4, WebM, MOV or AVI, up to ${minutes} minutes${size}.`;
      form.querySelector("#video-fps-hint").textContent = `More frames follow quicker changes and take longer. From ${fpsInput.min} to ${fpsInput.max}.`;
    })
    .catch(() => {});

  onSubmit(form, error, async () => {
    if (!file) return;
    if (!VIDEO_TYPES.test(file.name) && !file.type.startsWith("video/")) throw fieldError(input, "This is not a video file. Choose an MP4, WebM, MOV or AVI file.");
    const rate = Number(fpsInput.value);
    if (!fpsInput.checkValidity() || !(rate >= Number(fpsInput.min) && rate <= Number(fpsInput.max))) {
      throw fieldError(fpsInput, `Frames per second: choose a number from ${fpsInput.min} to ${fpsInput.max}.`);
    }
    const body = new FormData();
    body.append("file", file, file.name);
    body.append("fps", String(rate));
    const notes = form.notes.value.trim();
    if (notes) body.append("notes", notes);
    await uploadJob(ctx, {
      path: "/videos", body, bar,
      waiting: "Checking the video… ", refused: "This video cannot be analysed.",
      uploaded: "Uploaded. The video is being analysed.", next: (created) => `/videos/${encodeURIComponent(created.id)}`,
    });
  }, input);

  return {
    title: "Analyse a video",
    node: h(
      "section",
      {},
      h("h1", { id: "video-title" }, "Analyse a video"),
      h("p", { class: "lead" }, "Every face is followed through the video, and its expression read a few times a second."),
      form,
      recentList(ctx, {
        path: `/videos?page_size=${RECENT}`,
        title: "Your recent videos",
        empty: "No videos yet.",
        href: (video) => `#/videos/${encodeURIComponent(video.id)}`,
        text: (video) => [video.filename, video.duration_s ? seconds(video.duration_s) : null, statusWord(video)].filter(Boolean).join(", "),
      }),
    ),
  };
}

// ---- one video ----------------------------------------------------------------------------------------

export async function videoResultPage(ctx) {
  const [id] = ctx.params;
  const path = `/videos/${encodeURIComponent(id)}`;
  let video;
  try {
    video = await request(path);
  } catch (failure) {
    if (failure.status !== 404 && failure.status !== 422) throw failure;
    return notFound("Video not found", "There is no video with this address among yours. It may belong to another account, or the link may be mistyped.", "#/video", "Back to your videos");
  }

  const status = h("p", { class: "job-status" });
  const progress = h("progress", { max: 1, value: 0, "aria-labelledby": "video-progress-label" });
  const progressLabel = h("span", { id: "video-progress-label" });
  const progressBox = h("div", { class: "progress" }, progressLabel, progress);
  const facts = h("dl", { class: "details" });
  const error = alertBox();
  const downloads = h("div", { class: "actions downloads" });
  const timeline = h("figure", { class: "card figure timeline", hidden: true });
  const tracks = h("div", { class: "tracks" });
  let lastStatus = video.status;
  let tracksShape = "";

  function update(current) {
    video = current;
    const done = current.progress?.done ?? 0;
    const total = current.progress?.total ?? 0;
    progress.max = Math.max(total, 1);
    progress.value = done;
    progressLabel.textContent = total ? `${done} of ${total} frames analysed ` : "Preparing… ";
    progressBox.hidden = current.status === "done" || current.status === "failed";
    status.dataset.status = current.status;
    status.textContent = {
      queued: "Waiting to start…",
      running: "Analysing the video…",
      done: `Done: ${trackCount(current.tracks)} found in ${seconds(current.duration_s || 0)} of video.`,
      failed: "The video could not be analysed.",
    }[current.status] || current.status;
    error.show(current.status === "failed" ? current.error || "The video could not be analysed. Please try again." : "");
    facts.replaceChildren(
      ...[
        ["File", current.filename],
        ["Length", current.duration_s ? seconds(current.duration_s) : null],
        ["Frames analysed per second", current.fps ? String(current.fps) : null],
        ["Notes", current.notes],
      ]
        .filter(([, value]) => value)
        .flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
    );
    // While it runs, the tracks so far (the service links the frames stored until now).
    // Rebuilt only when it changed, so a keyboard user's place in the table survives the polls.
    const shape = `${current.status}|${(current.tracks || []).map((track) => `${track.track}:${(track.frames || []).length}`).join(",")}`;
    if (shape !== tracksShape) {
      tracksShape = shape;
      tracks.replaceChildren(trackTable(current));
    }
    if (current.status !== lastStatus) {
      lastStatus = current.status;
      if (current.status === "done") announce(`Video analysed: ${trackCount(current.tracks)} found.`);
      else if (current.status === "failed") announce("The video could not be analysed.");
    }
  }

  async function whenDone() {
    if (video.status !== "done") return;
    const [picture, csv] = await Promise.allSettled([
      fetchFile(`${path}/timeline.png`, `video-${id}-timeline.png`),
      downloadLink(ctx, `${path}/timeline.csv`, `video-${id}-timeline.csv`, "Download CSV"),
    ]);
    if (ctx.signal.aborted) return;
    if (picture.status === "fulfilled") {
      const url = URL.createObjectURL(picture.value.blob);
      ctx.onLeave(() => URL.revokeObjectURL(url));
      timeline.replaceChildren(
        h("img", { src: url, class: "annotated", alt: timelineAlt(video) }),
        h("figcaption", {}, "Each face's expression over time: one row per face, coloured by expression."),
      );
      timeline.hidden = false;
    } else {
      timeline.replaceChildren(h("p", { class: "notice error", role: "alert" }, `The timeline picture could not be loaded. ${picture.reason.message}`));
      timeline.hidden = false;
    }
    if (csv.status === "fulfilled") downloads.replaceChildren(csv.value.link);
    else error.show(`The CSV could not be prepared. ${csv.reason.message}`);
  }

  update(video);
  if (running(video)) {
    pollWhile(path, running, update, ctx.signal)
      .then((last) => last && whenDone())
      .catch((failure) => !ctx.signal.aborted && error.show(`The progress could not be followed. ${failure.message}`));
  } else {
    whenDone();
  }

  return {
    title: "Video analysis",
    node: h(
      "section",
      { class: "stack-tight", "data-video-id": video.id },
      h("h1", {}, "Video analysis"),
      leadLine(formatDate(video.created_at)),
      h("div", { class: "card stack" }, status, progressBox, facts, error, downloads),
      timeline,
      tracks,
      h("p", {}, h("a", { href: "#/video" }, "Analyse another video"), " · ", h("a", { href: "#/history" }, "All your results")),
    ),
  };
}

function trackCount(tracks) {
  const count = (tracks || []).length;
  return count === 0 ? "no face" : count === 1 ? "1 face" : `${count} faces`;
}

function seconds(value) {
  if (value < 60) return `${value.toFixed(1)} s`;
  const whole = Math.round(value);
  return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
}

function span(track) {
  const frames = track.frames || [];
  const start = track.start_t ?? frames[0]?.t ?? 0;
  const end = track.end_t ?? frames[frames.length - 1]?.t ?? start;
  return { start, end };
}

function trackName(track) {
  return `Face ${track.track}`;
}

// The picture's words: what a sighted person reads from it at a glance.
function timelineAlt(video) {
  const tracks = video.tracks || [];
  if (!tracks.length) return "Timeline of the video: no face was found.";
  return `Timeline of expressions over ${seconds(video.duration_s || 0)}: ${tracks
    .map((track) => {
      const { start, end } = span(track);
      const top = track.summary?.dominant_label || "unknown";
      return `${trackName(track)} from ${seconds(start)} to ${seconds(end)}, mostly ${top} (${percent(track.summary?.share?.[top] ?? 0)})`;
    })
    .join("; ")}.`;
}

function trackTable(video) {
  const tracks = video.tracks || [];
  if (!tracks.length) {
    return video.status === "done" ? h("p", { class: "notice info" }, "No face was found in this video.") : h("div");
  }
  return h(
    "div",
    { class: "table-scroll", role: "region", "aria-labelledby": "tracks-caption", tabindex: "0" },
    h(
      "table",
      { class: "data-table tracks-table" },
      h("caption", { id: "tracks-caption" }, video.status === "done" ? "Faces in the video" : "Faces found so far"),
      h("thead", {}, h("tr", {}, ["Face", "Time", "Mostly", "Share of its time per expression"].map((name) => h("th", { scope: "col" }, name)))),
      h(
        "tbody",
        {},
        tracks.map((track) => {
          const { start, end } = span(track);
          const share = Object.entries(track.summary?.share || {});
          const top = track.summary?.dominant_label || "";
          return h(
            "tr",
            { "data-track": track.track },
            h("th", { scope: "row" }, trackName(track)),
            h("td", {}, `${seconds(start)} – ${seconds(end)}`, h("br"), h("span", { class: "hint" }, `${(track.frames || []).length} frames`)),
            h("td", {}, capital(top)),
            h(
              "td",
              {},
              h(
                "ul",
                { class: "bars small", "aria-label": `Share of time per expression, ${trackName(track)}` },
                share.map(([label, value]) => {
                  const fill = h("span", { class: "fill" });
                  fill.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`;
                  return h("li", { class: label === top ? "top" : "" }, h("span", { class: "name" }, capital(label)), h("span", { class: "bar", "aria-hidden": "true" }, fill), h("span", { class: "value" }, percent(value)));
                }),
              ),
            ),
          );
        }),
      ),
    ),
  );
}
