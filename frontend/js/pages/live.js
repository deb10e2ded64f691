// The live camera: frames go to the platform over a WebSocket, boxes and labels come back and are drawn
// over the video, and a chart keeps the last minute. Nothing is stored unless "Save snapshot" is pressed.
import { currentAccessToken, request, sessionRefused, socketUrl } from "../api.js";
import { alertBox, announce, capital, h, percent } from "../dom.js";

const CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
// Distinct hues, each dark enough to read on white.
const COLOURS = { angry: "#c62828", disgust: "#2e7d32", fear: "#6a1b9a", happy: "#e65100", sad: "#1565c0", surprise: "#00838f", neutral: "#546e7a" };
const CAMERA = { width: 320, height: 240 };
const JPEG_QUALITY = 0.8;
// Two frames in flight hide the network's round trip without ever building a backlog on either side.
const MAX_IN_FLIGHT = 2;
// The camera gives ~30 frames a second; more than 20 sent would only repeat frames.
const MIN_SEND_GAP_MS = 50;
// Frames the server never answered (it drops stale ones) stop counting as in flight after this long.
const STALL_MS = 4000;
const READY_TIMEOUT_MS = 10_000;
// Well inside the minute between the app renewing its access token and the old one expiring.
const TOKEN_CHECK_MS = 15_000;
const CHART_SPAN_MS = 60_000;
const CHART_EVERY_MS = 250;
const FPS_WINDOW_MS = 2000;
const SOCKET_POLICY_VIOLATION = 1008;

export function livePage(ctx) {
  const error = alertBox();
  const state = h("p", { class: "job-status", role: "status" }, "The camera is off.");
  const video = h("video", { muted: true, playsinline: true, "aria-hidden": "true" });
  video.muted = true; // the attribute alone does not mute in every browser, and autoplay needs it
  const overlay = h("canvas", { class: "overlay", "aria-hidden": "true" });
  const stage = h("div", { class: "live-stage", "data-faces": "0", "data-replies": "0" }, video, overlay);
  const now = h("p", { class: "live-now", id: "live-now" }, "No face yet.");
  const stats = {
    fps: h("dd", { "data-field": "fps" }, "0.0"),
    ms: h("dd", { "data-field": "ms" }, "–"),
    skipped: h("dd", { "data-field": "skipped" }, "0"),
  };
  const chart = h("canvas", { class: "live-chart", width: "600", height: "180", role: "img", "aria-label": "Chart of each expression's score over the last minute", "aria-describedby": "chart-summary" });
  const chartSummary = h("p", { class: "hint", id: "chart-summary" }, "The chart fills in while the camera is on.");
  const startButton = h("button", { type: "button", class: "button", onclick: () => (camera ? stop("The camera is off.") : start()) }, "Start camera");
  const snapButton = h("button", { type: "button", class: "button secondary", disabled: true, onclick: snapshot }, "Save snapshot");
  const saved = h("p", { class: "saved-links", role: "status" });

  let camera = null; // the MediaStream while on
  let socket = null;
  let ready = false;
  let inFlight = 0;
  let sent = 0; // frames sent on this socket; the server numbers them in the same order
  let firstSeq = null; // the server's number for our first frame (answered first: nothing is queued before it)
  let lastSendAt = 0;
  let lastReplyAt = 0;
  let capturing = false;
  let skipped = 0;
  let replies = [];
  let samples = []; // { at, scores } of the main face per reply (null: no face), the chart's last minute
  let lastFrame = null; // { blob, width, height } of the frame most recently sent
  let chartTimer = 0;
  let stallTimer = 0;
  let readyTimer = 0;
  let tokenTimer = 0;
  let sentToken = null;
  const capture = document.createElement("canvas");

  ctx.onLeave(() => stop(null));

  async function start() {
    error.show("");
    saved.replaceChildren();
    if (!navigator.mediaDevices?.getUserMedia) {
      error.show("This browser cannot use a camera on this page. Cameras need a secure (https) address.");
      return;
    }
    startButton.disabled = true;
    state.textContent = "Starting the camera…";
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: CAMERA, audio: false });
    } catch (failure) {
      startButton.disabled = false;
      state.textContent = "The camera is off.";
      error.show(cameraProblem(failure));
      return;
    }
    if (ctx.signal.aborted) return stream.getTracks().forEach((track) => track.stop());
    camera = stream;
    video.srcObject = stream;
    try {
      await video.play();
    } catch {
      /* muted inline video plays without a gesture; a refusal here still leaves frames to capture */
    }
    startButton.textContent = "Stop camera";
    startButton.disabled = false;
    resetCounters();
    state.textContent = "Connecting…";
    connect();
    chartTimer = setInterval(drawChart, CHART_EVERY_MS);
    stallTimer = setInterval(unstick, 1000);
    tokenTimer = setInterval(renewToken, TOKEN_CHECK_MS);
  }

  function resetCounters() {
    ready = false;
    inFlight = 0;
    sent = 0;
    firstSeq = null;
    skipped = 0;
    replies = [];
    samples = [];
    lastReplyAt = 0;
    lastFrame = null;
    now.textContent = "No face yet.";
    stage.dataset.faces = "0";
    stage.dataset.replies = "0";
    stats.fps.textContent = "0.0";
    stats.ms.textContent = "–";
    stats.skipped.textContent = "0";
  }

  function connect() {
    const ws = new WebSocket(socketUrl("/live"));
    socket = ws;
    readyTimer = setTimeout(() => ws === socket && !ready && stop("The camera is off.", "The platform did not answer. Please try again."), READY_TIMEOUT_MS);
    ws.addEventListener("open", async () => {
      try {
        // The token goes in the first message, never in the address (logs and history keep addresses).
        sentToken = await currentAccessToken();
        ws.send(JSON.stringify({ token: sentToken }));
      } catch (failure) {
        if (ws === socket) stop("The camera is off.", failure.message);
      }
    });
    ws.addEventListener("message", (event) => ws === socket && onReply(event.data));
    ws.addEventListener("close", (event) => {
      if (ws !== socket) return; // a socket this page already closed
      if (event.code === SOCKET_POLICY_VIOLATION) {
        stop(null);
        sessionRefused(); // the app's own "session ended" path: back to the login page, then here again
        return;
      }
      stop("The camera is off.", event.reason ? `The live connection closed: ${event.reason}` : "The live connection closed. Press Start camera to try again.");
    });
  }

  function onReply(data) {
    let reply;
    try {
      reply = JSON.parse(data);
    } catch {
      return; // not ours to show
    }
    if (reply.type === "ready") {
      // Also the answer to a fresh token sent later; only the first one starts the session.
      if (ready) return;
      clearTimeout(readyTimer);
      ready = true;
      state.textContent = "Live: the camera's frames are being analysed.";
      announce("The camera is on and its frames are being analysed.");
      snapButton.disabled = false;
      pump();
      return;
    }
    settle(reply);
    if (reply.error) {
      state.textContent = `Live, but the last frame was refused: ${reply.error}`;
      pump();
      return;
    }
    const at = performance.now();
    replies.push(at);
    while (replies.length && replies[0] < at - FPS_WINDOW_MS) replies.shift();
    const faces = reply.faces || [];
    const windowMs = Math.min(FPS_WINDOW_MS, at - (replies[0] ?? at)) || FPS_WINDOW_MS;
    stats.fps.textContent = replies.length > 1 ? (((replies.length - 1) * 1000) / windowMs).toFixed(1) : "0.0";
    if (typeof reply.ms === "number") stats.ms.textContent = `${Math.round(reply.ms)} ms`;
    stats.skipped.textContent = String(skipped);
    stage.dataset.faces = String(faces.length);
    stage.dataset.replies = String(Number(stage.dataset.replies) + 1);
    now.textContent = faces.length
      ? `${faces.length === 1 ? "1 face" : `${faces.length} faces`}: ${faces.map((face) => `${face.label}${face.uncertain ? ", uncertain" : ""} (${percent(face.scores?.[face.label] ?? 0)})`).join(", ")}`
      : "No face in view.";
    const main = largest(faces);
    samples.push({ at, scores: main ? main.scores || {} : null });
    drawBoxes(faces);
    pump();
  }

  // Which frames a reply settles: every one the server numbered up to `seq` (stale ones it skipped
  // included), so the in-flight count cannot leak when the server drops frames.
  function settle(reply) {
    if (typeof reply.seq === "number") {
      if (firstSeq === null) firstSeq = reply.seq;
      const answeredThrough = reply.seq - firstSeq + 1;
      inFlight = Math.max(0, Math.min(inFlight - 1, sent - answeredThrough));
    } else {
      inFlight = Math.max(0, inFlight - 1);
    }
    if (typeof reply.skipped === "number") skipped += reply.skipped; // dropped since the previous reply
    lastReplyAt = performance.now();
  }

  // The server closes the socket when the token it was given expires: hand it each renewed token
  // (the app renews a minute before expiry) while the camera runs.
  async function renewToken() {
    const ws = socket;
    if (!ready || !ws) return;
    let token;
    try {
      token = await currentAccessToken();
    } catch {
      return; // a refused refresh ends the session through the app's own path
    }
    if (token !== sentToken && ws === socket && ws.readyState === WebSocket.OPEN) {
      sentToken = token;
      ws.send(JSON.stringify({ token }));
    }
  }

  // The server answers the newest frame and skips stale ones; should a reply never come, do not wait forever.
  function unstick() {
    if (inFlight && performance.now() - lastReplyAt > STALL_MS) {
      inFlight = 0;
      pump();
    }
  }

  async function pump() {
    if (capturing || !ready || !camera) return;
    capturing = true;
    try {
      while (camera && ready && socket?.readyState === WebSocket.OPEN && inFlight < MAX_IN_FLIGHT) {
        const wait = MIN_SEND_GAP_MS - (performance.now() - lastSendAt);
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const frame = await grab();
        if (!frame || !camera || socket?.readyState !== WebSocket.OPEN) break;
        socket.send(frame.blob);
        lastFrame = frame;
        sent += 1;
        inFlight += 1;
        lastSendAt = performance.now();
        if (!lastReplyAt) lastReplyAt = lastSendAt;
      }
    } finally {
      capturing = false;
    }
  }

  /** The video's current picture as a JPEG, at the camera's own size (the boxes come back in its pixels). */
  async function grab() {
    for (let tries = 0; !video.videoWidth && tries < 50 && camera; tries++) await new Promise((resolve) => setTimeout(resolve, 50));
    if (!video.videoWidth) return null;
    capture.width = video.videoWidth;
    capture.height = video.videoHeight;
    capture.getContext("2d").drawImage(video, 0, 0, capture.width, capture.height);
    const blob = await new Promise((resolve) => capture.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
    return blob && { blob, width: capture.width, height: capture.height };
  }

  // Boxes are in the sent frame's pixels; the video is shown at another size, so scale them.
  function drawBoxes(faces) {
    const width = video.clientWidth;
    const height = video.clientHeight;
    const ratio = window.devicePixelRatio || 1;
    // Resizing reallocates the canvas: only when the size changed, as drawChart does.
    if (overlay.width !== Math.round(width * ratio)) overlay.width = Math.round(width * ratio);
    if (overlay.height !== Math.round(height * ratio)) overlay.height = Math.round(height * ratio);
    overlay.style.width = `${width}px`;
    overlay.style.height = `${height}px`;
    const draw = overlay.getContext("2d");
    // The whole canvas in its own pixels (the rounded size may pass width × ratio), then CSS pixels.
    draw.setTransform(1, 0, 0, 1, 0, 0);
    draw.clearRect(0, 0, overlay.width, overlay.height);
    draw.setTransform(ratio, 0, 0, ratio, 0, 0);
    if (!lastFrame) return;
    const scaleX = width / lastFrame.width;
    const scaleY = height / lastFrame.height;
    draw.lineWidth = 3;
    draw.font = "600 14px system-ui, sans-serif";
    draw.textBaseline = "top";
    for (const face of faces) {
      const [x, y, w, hgt] = face.box || [];
      if (!w || !hgt) continue;
      const colour = COLOURS[face.label] || "#1f5fbf";
      const left = x * scaleX;
      const top = y * scaleY;
      draw.strokeStyle = colour;
      draw.strokeRect(left, top, w * scaleX, hgt * scaleY);
      const text = `${face.label} ${percent(face.scores?.[face.label] ?? 0)}`;
      const textWidth = draw.measureText(text).width + 8;
      const labelTop = top >= 20 ? top - 20 : top + hgt * scaleY;
      draw.fillStyle = colour;
      draw.fillRect(left - 1.5, labelTop, textWidth, 20);
      draw.fillStyle = "#fff";
      draw.fillText(text, left + 2.5, labelTop + 3);
    }
  }

  function drawChart() {
    const at = performance.now();
    while (samples.length && samples[0].at < at - CHART_SPAN_MS) samples.shift();
    const ratio = window.devicePixelRatio || 1;
    const width = chart.clientWidth || 600;
    const height = chart.clientHeight || 180;
    if (chart.width !== Math.round(width * ratio)) chart.width = Math.round(width * ratio);
    if (chart.height !== Math.round(height * ratio)) chart.height = Math.round(height * ratio);
    const draw = chart.getContext("2d");
    draw.setTransform(ratio, 0, 0, ratio, 0, 0);
    draw.clearRect(0, 0, width, height);
    const pad = { left: 34, right: 8, top: 8, bottom: 20 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const xOf = (time) => pad.left + plotW * (1 - (at - time) / CHART_SPAN_MS);
    const yOf = (score) => pad.top + plotH * (1 - score);
    // Grid: 0, 50 and 100 %, and the time axis in seconds ago.
    draw.strokeStyle = "#d5dce5";
    draw.fillStyle = "#4d5b6b";
    draw.lineWidth = 1;
    draw.font = "12px system-ui, sans-serif";
    draw.textBaseline = "middle";
    for (const score of [0, 0.5, 1]) {
      draw.beginPath();
      draw.moveTo(pad.left, yOf(score));
      draw.lineTo(width - pad.right, yOf(score));
      draw.stroke();
      draw.fillText(`${score * 100}%`, 2, yOf(score));
    }
    draw.textBaseline = "bottom";
    for (const ago of [60, 30, 0]) draw.fillText(ago ? `-${ago} s` : "now", Math.min(xOf(at - ago * 1000), width - 28), height);
    // One line per class through the main face's scores; a gap where no face was seen.
    draw.lineWidth = 2;
    for (const label of CLASSES) {
      draw.strokeStyle = COLOURS[label];
      draw.beginPath();
      let drawing = false;
      for (const sample of samples) {
        if (!sample.scores) {
          drawing = false;
          continue;
        }
        const point = [xOf(sample.at), yOf(sample.scores[label] ?? 0)];
        if (drawing) draw.lineTo(...point);
        else draw.moveTo(...point);
        drawing = true;
      }
      draw.stroke();
    }
    chartSummary.textContent = summarise(samples);
  }

  async function snapshot() {
    const frame = (camera && (await grab())) || lastFrame;
    if (!frame) return;
    snapButton.disabled = true;
    error.show("");
    saved.textContent = "Saving the snapshot…";
    try {
      const body = new FormData();
      body.append("file", frame.blob, `snapshot-${new Date().toISOString().replace(/[:.]/g, "-")}.jpg`);
      body.append("notes", "Live camera snapshot");
      const prediction = await request("/predictions", { method: "POST", body });
      if (ctx.signal.aborted) return;
      const found = prediction.faces?.length || 0;
      saved.replaceChildren(
        `Snapshot saved (${found === 1 ? "1 face" : `${found} faces`}). `,
        h("a", { href: `#/results/${encodeURIComponent(prediction.id)}` }, "Open the snapshot's result"),
      );
    } catch (failure) {
      saved.replaceChildren();
      error.show(`The snapshot could not be saved. ${failure.message}`);
    } finally {
      snapButton.disabled = !camera;
    }
  }

  /** Camera and socket off; `words` for the status line (null: leaving the page), `problem` for the alert. */
  function stop(words, problem = "") {
    clearInterval(chartTimer);
    clearInterval(stallTimer);
    clearInterval(tokenTimer);
    clearTimeout(readyTimer);
    const ws = socket;
    socket = null; // first, so its close event is known as ours
    ready = false;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "camera stopped");
    camera?.getTracks().forEach((track) => track.stop());
    const wasOn = Boolean(camera);
    camera = null;
    video.srcObject = null;
    if (words === null) return;
    overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
    startButton.textContent = "Start camera";
    startButton.disabled = false;
    snapButton.disabled = true;
    state.textContent = words;
    if (problem) error.show(problem);
    else if (wasOn) announce("The camera is off.");
  }

  return {
    title: "Live camera",
    node: h(
      "section",
      {},
      h("h1", {}, "Live camera"),
      h("p", { class: "lead" }, "Your camera's picture is analysed as you watch. Nothing is kept unless you save a snapshot."),
      h(
        "div",
        { class: "live-grid" },
        h(
          "div",
          { class: "card stack" },
          h("div", { class: "actions" }, startButton, snapButton),
          state,
          error,
          saved,
          stage,
          now,
        ),
        h(
          "div",
          { class: "card stack" },
          h("h2", {}, "Speed"),
          h("dl", { class: "details live-stats" }, h("dt", {}, "Frames per second"), stats.fps, h("dt", {}, "Last answer took"), stats.ms, h("dt", {}, "Frames skipped by the server"), stats.skipped),
          h("h2", {}, "The last minute"),
          chart,
          h("ul", { class: "legend", "aria-label": "Chart colours" }, CLASSES.map((label) => {
            const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
            swatch.style.background = COLOURS[label];
            return h("li", {}, swatch, capital(label));
          })),
          chartSummary,
        ),
      ),
    ),
  };
}

function largest(faces) {
  let best = null;
  for (const face of faces) {
    const [, , w = 0, hgt = 0] = face.box || [];
    if (!best || w * hgt > best.area) best = { area: w * hgt, face };
  }
  return best?.face || null;
}

/** The chart in words: how often a face was seen and its most frequent expression. */
function summarise(samples) {
  if (!samples.length) return "No frames answered yet.";
  const withFace = samples.filter((sample) => sample.scores);
  if (!withFace.length) return "No face seen in the last minute.";
  const counts = {};
  for (const sample of withFace) {
    const top = Object.entries(sample.scores).reduce((a, b) => (b[1] > a[1] ? b : a), ["", -1])[0];
    counts[top] = (counts[top] || 0) + 1;
  }
  const [label, count] = Object.entries(counts).reduce((a, b) => (b[1] > a[1] ? b : a));
  return `In the last minute a face was seen in ${percent(withFace.length / samples.length)} of the answered frames, most often ${label} (${percent(count / withFace.length)} of them).`;
}

function cameraProblem(failure) {
  switch (failure?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera access was denied. Allow this site to use the camera in the browser's address bar or settings, then press Start camera again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Connect a camera and press Start camera again.";
    case "NotReadableError":
    case "AbortError":
      return "The camera is in use by another program or could not be started. Close the other program and try again.";
    default:
      return `The camera could not be started${failure?.message ? `: ${failure.message}` : "."}`;
  }
}
