// The main menu: where to go next, with the account's usage at a glance.
import { request } from "../api.js";
import { h } from "../dom.js";

export async function menuPage(ctx) {
  const user = (ctx.app.user = await request("/users/me"));
  const runs = user.computations === 1 ? "1 analysis" : `${user.computations} analyses`;
  const entry = (href, title, text) => h("li", {}, h("a", { class: "tile", href }, h("strong", {}, title), h("span", {}, text)));
  return {
    title: "Menu",
    node: h(
      "section",
      {},
      h("h1", {}, `Hello, ${user.display_name}`),
      h("p", { class: "lead" }, `You have run ${runs} so far.`),
      h(
        "ul",
        { class: "tiles", "aria-label": "What would you like to do?" },
        entry("#/analyze", "Analyse a photo", "Upload a photo and see the expression on every face."),
        entry("#/batch", "Analyse many photos", "Upload a set of photos or a ZIP and get one CSV for them all."),
        entry("#/video", "Analyse a video", "Follow every face's expression through a recording."),
        entry("#/live", "Live camera", "See expressions on your camera's picture as they happen."),
        entry("#/history", "History", "Open your past analyses and download their reports."),
        entry("#/account", "Account", "See and change your details and password."),
        // Administrators only: the API refuses the console to anyone else anyway.
        user.role === "admin" ? entry("#/console", "Operators' console", "Train, compare and roll out models; manage accounts.") : null,
      ),
    ),
  };
}
