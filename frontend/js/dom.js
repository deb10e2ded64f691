// Small DOM helpers. Text always goes in as text nodes (never innerHTML), so API data cannot inject markup.

/** h("button", {type: "submit", onclick}, "Save") → element. Attributes starting with "on" become listeners. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, value);
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A polite announcement for screen readers (logged in, saved, analysis done). */
export function announce(text) {
  const region = document.getElementById("status");
  region.textContent = "";
  // Emptied first and filled a moment later, so the same message said twice is read twice.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/** An error box that is read out as soon as it appears. Empty text hides it. */
export function alertBox() {
  const box = h("div", { class: "notice error", role: "alert", hidden: true });
  box.show = (text) => {
    box.textContent = text || "";
    box.hidden = !text;
  };
  return box;
}

/** A labelled input with an optional hint, wired with aria-describedby. */
let fieldCount = 0;
export function field(label, attrs = {}, hint = "") {
  const id = attrs.id || `field-${++fieldCount}`;
  const hintId = hint ? `${id}-hint` : null;
  const input = h(attrs.multiline ? "textarea" : "input", { ...attrs, multiline: null, id, "aria-describedby": hintId });
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    input,
  );
}

/**
 * Runs `work` on submit with the form's controls disabled; a thrown error is shown in `error`.
 * Then focus goes to the failure's `field`, else `retry` after a failure, else back where it was
 * (disabling a focused button drops focus to the page).
 */
export function onSubmit(form, error, work, retry = null) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.show(""); // a new attempt clears the last outcome
    form.querySelectorAll(".notice.success").forEach((note) => (note.hidden = true));
    const controls = [...form.elements];
    const wasDisabled = controls.map((control) => control.disabled);
    const focused = document.activeElement;
    controls.forEach((control) => (control.disabled = true));
    form.setAttribute("aria-busy", "true");
    let target = null;
    try {
      await work();
    } catch (failure) {
      error.show(failure.message || "Something went wrong. Please try again.");
      target = failure.field || retry;
    } finally {
      controls.forEach((control, i) => (control.disabled = wasDisabled[i]));
      form.removeAttribute("aria-busy");
    }
    if (target) target.focus();
    else if (document.activeElement === document.body && focused?.isConnected) focused.focus();
  });
}

/** An error for `onSubmit` that puts focus on the field to fix. */
export function fieldError(field, message) {
  return Object.assign(new Error(message), { field });
}

export function formatDate(iso) {
  // The API's times are UTC; one without a zone must not be read as local time.
  const date = new Date(/(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : `${iso}Z`);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function percent(value) {
  return `${(value * 100).toFixed(1)}%`;
}

/** "happy" → "Happy"; anything missing → "". */
export function capital(text) {
  const word = String(text ?? "");
  return word.charAt(0).toUpperCase() + word.slice(1);
}

/** plural(1, "face", "faces") → "1 face", plural(3, …) → "3 faces". */
export const plural = (count, one, many) => `${count} ${count === 1 ? one : many}`;

/** Lets `zone` take files dropped on it as its file `input` would: `choose(files)` gets them either way. */
export function acceptDrops(zone, input, choose) {
  input.addEventListener("change", () => choose(input.files));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const dropped = event.dataTransfer?.files;
    if (!dropped?.length) return;
    input.files = dropped;
    choose(dropped);
  });
}
