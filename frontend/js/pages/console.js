// The operators' console (administrators only): what its pages share. The menu shows it only to
// administrators; the API refuses everyone else (403) whatever the browser shows.
import { request } from "../api.js";
import { h } from "../dom.js";

const SECTIONS = [
  ["#/console/models", "Models"],
  ["#/console/training", "Training"],
  ["#/console/users", "Users"],
];

/** The signed-in user, loaded once per login (the menu loads it too). */
export async function currentUser(ctx) {
  ctx.app.user ??= await request("/users/me");
  return ctx.app.user;
}

/** Wraps a console page: a person who is not an administrator gets a page that says so, not an error. */
export function adminOnly(page) {
  return async (ctx) => {
    const user = await currentUser(ctx);
    if (user.role !== "admin") return needsAdmin();
    try {
      return await page(ctx);
    } catch (failure) {
      if (failure.status === 403) return needsAdmin(); // demoted since the page was opened
      throw failure;
    }
  };
}

function needsAdmin() {
  return {
    title: "Needs an administrator",
    node: h(
      "section",
      {},
      h("h1", {}, "This page needs an administrator"),
      h("p", { class: "notice error", role: "alert" }, "The operators' console is for administrators only, and your account is not one. An administrator can change your role."),
      h("p", {}, h("a", { href: "#/" }, "Go to the menu"), "."),
    ),
  };
}

/** The console's own navigation, under each console page's heading. */
export function consoleNav(current) {
  return h(
    "nav",
    { class: "subnav", "aria-label": "Console" },
    h("ul", {}, SECTIONS.map(([href, text]) => h("li", {}, h("a", { href, "aria-current": href === current ? "page" : null }, text)))),
  );
}

/** #/console: where the console's three pages are. */
export const consolePage = adminOnly(async () => {
  const entry = (href, title, text) => h("li", {}, h("a", { class: "tile", href }, h("strong", {}, title), h("span", {}, text)));
  return {
    title: "Console",
    node: h(
      "section",
      {},
      h("h1", {}, "Operators' console"),
      h("p", { class: "lead" }, "Train, measure, compare and roll out models; manage accounts."),
      h(
        "ul",
        { class: "tiles", "aria-label": "Console pages" },
        entry("#/console/models", "Models", "Every version's figures, comparisons, promote and roll back."),
        entry("#/console/training", "Training", "Start a training job, follow it, and see past jobs."),
        entry("#/console/users", "Users", "Find accounts, change roles, disable an account."),
      ),
    ),
  };
});

/**
 * A modal confirmation that spells out the consequence. Resolves true when confirmed, false when
 * cancelled (the button, Escape). Focus starts on Cancel and returns where it was.
 */
export function confirmDialog({ title, body, confirm, danger = false }) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const id = `dialog-${Date.now()}`;
    const cancelButton = h("button", { type: "button", class: "button secondary", onclick: () => dialog.close("cancel") }, "Cancel");
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-body` },
      h("h2", { id: `${id}-title` }, title),
      h("div", { id: `${id}-body`, class: "stack" }, [body].flat().map((text) => (text instanceof Node ? text : h("p", {}, text)))),
      h(
        "div",
        { class: "actions" },
        cancelButton,
        h("button", { type: "button", class: `button${danger ? " danger" : ""}`, onclick: () => dialog.close("confirm") }, confirm),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener?.isConnected) opener.focus();
      resolve(dialog.returnValue === "confirm");
    });
    document.body.append(dialog);
    dialog.showModal();
    cancelButton.focus();
  });
}

/** "0.624" → "62.4%", a missing figure → "not measured". */
export function figure(value) {
  return typeof value === "number" && Number.isFinite(value) ? `${(value * 100).toFixed(1)}%` : "not measured";
}
