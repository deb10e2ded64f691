// The shell: hash routing, the logged-in navigation, focus and titles on every route change.
import { hasSession, logout, onSessionEnd, refresh, request } from "./api.js";
import { alertBox, announce, h } from "./dom.js";
import { accountPage } from "./pages/account.js";
import { analyzePage } from "./pages/analyze.js";
import { loginPage, registerPage } from "./pages/auth.js";
import { batchPage, batchResultPage } from "./pages/batch.js";
import { consolePage } from "./pages/console.js";
import { historyPage } from "./pages/history.js";
import { livePage } from "./pages/live.js";
import { menuPage } from "./pages/menu.js";
import { modelsPage } from "./pages/models.js";
import { resultPage } from "./pages/result.js";
import { trainingJobPage, trainingPage } from "./pages/training.js";
import { usersPage } from "./pages/users.js";
import { videoPage, videoResultPage } from "./pages/video.js";

const routes = [
  { pattern: /^\/login$/, page: loginPage, guest: true },
  { pattern: /^\/register$/, page: registerPage, guest: true },
  { pattern: /^\/$/, page: menuPage },
  { pattern: /^\/account$/, page: accountPage },
  { pattern: /^\/analyze$/, page: analyzePage },
  { pattern: /^\/history$/, page: historyPage },
  { pattern: /^\/results\/([^/]+)$/, page: resultPage },
  { pattern: /^\/batch$/, page: batchPage },
  { pattern: /^\/batches\/([^/]+)$/, page: batchResultPage, nav: "/batch" },
  { pattern: /^\/video$/, page: videoPage },
  { pattern: /^\/videos\/([^/]+)$/, page: videoResultPage, nav: "/video" },
  { pattern: /^\/live$/, page: livePage },
  // The operators' console: administrators only (each page says so to anyone else; the API enforces it).
  { pattern: /^\/console$/, page: consolePage, nav: "/console" },
  { pattern: /^\/console\/models$/, page: modelsPage, nav: "/console" },
  { pattern: /^\/console\/training$/, page: trainingPage, nav: "/console" },
  { pattern: /^\/console\/training\/([^/]+)$/, page: trainingJobPage, nav: "/console" },
  { pattern: /^\/console\/users$/, page: usersPage, nav: "/console" },
];

// What pages share: the signed-in user, a notice for the login page (logged out, session ended, account
// created; kept until another page shows), where to go after login, history page cursors.
const app = { user: null, notice: null, returnTo: null, historyPrev: {} };
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const consoleLink = document.getElementById("nav-console");
let navigation = 0;
let leaving = [];

export function go(path) {
  if (location.hash === `#${path}`) render();
  else location.hash = `#${path}`;
}

async function render() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const route = routes.find((candidate) => candidate.pattern.test(path || "/"));
  const current = ++navigation;
  leaving.forEach((fn) => fn());
  leaving = [];

  if (route && !route.guest && !hasSession()) {
    app.returnTo = path;
    return go("/login");
  }
  if (route?.guest && hasSession()) return go("/");
  if (path !== "/login") app.notice = null;
  nav.hidden = !hasSession();
  markCurrentLink(route?.nav || path || "/");
  consoleLink.hidden = app.user?.role !== "admin";

  const controller = new AbortController();
  leaving.push(() => controller.abort());
  const ctx = {
    app,
    go,
    params: route ? (path || "/").match(route.pattern).slice(1).map(decodeURIComponent) : [],
    query: new URLSearchParams(query),
    signal: controller.signal,
    onLeave: (fn) => leaving.push(fn),
  };

  main.setAttribute("aria-busy", "true");
  main.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  let view;
  try {
    view = route ? await route.page(ctx) : notFoundView();
  } catch (error) {
    view = errorView(error);
  }
  if (current !== navigation) return; // the person moved on while this page loaded
  main.replaceChildren(view.node);
  main.removeAttribute("aria-busy");
  showConsoleLink();
  document.title = `${view.title} · FER platform`;
  // Move focus to the new page's heading so keyboard and screen-reader users start at the top of it.
  const heading = main.querySelector("h1");
  heading.tabIndex = -1;
  heading.focus();
}

// The console's link is for administrators only. Who is signed in comes from the menu (GET /users/me), or
// is asked once here (a reload on another page); the API refuses non-administrators whatever this shows.
let userAsked = null;
function showConsoleLink() {
  consoleLink.hidden = app.user?.role !== "admin";
  if (app.user || userAsked || !hasSession()) return;
  const asking = (userAsked = request("/users/me")
    .then((user) => {
      if (userAsked === asking && hasSession()) app.user ??= user;
    })
    .catch(() => {})
    .finally(() => {
      if (userAsked === asking) userAsked = null;
      consoleLink.hidden = app.user?.role !== "admin";
    }));
}

function markCurrentLink(path) {
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#${path}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function notFoundView() {
  return {
    title: "Page not found",
    node: h("section", {}, h("h1", {}, "Page not found"), h("p", {}, "There is nothing at this address. ", h("a", { href: "#/" }, "Go to the menu"), ".")),
  };
}

function errorView(error) {
  const box = alertBox();
  box.show(error?.message || "Something went wrong.");
  console.error(error);
  return {
    title: "Something went wrong",
    node: h(
      "section",
      {},
      h("h1", {}, "This page could not be loaded"),
      box,
      h("button", { type: "button", class: "button", onclick: render }, "Try again"),
    ),
  };
}

// Nothing of the last person stays in memory after a log out (the tokens are dropped by api.js).
function toLogin(notice, returnTo = null) {
  Object.assign(app, { user: null, notice, returnTo, historyPrev: {} });
  userAsked = null;
  consoleLink.hidden = true;
  go("/login");
}

document.getElementById("logout").addEventListener("click", async () => {
  await logout();
  toLogin("You have logged out.");
});

// An ended session sends the person back where they were once they log in again.
onSessionEnd((reason) => toLogin(reason, location.hash.slice(1).split("?")[0] || null));

// A failure outside any page's own handling still reaches the person, in words, never a blank page.
window.addEventListener("unhandledrejection", (event) => {
  console.error(event.reason);
  announce(event.reason?.message || "Something went wrong. Please try again.");
});

window.addEventListener("hashchange", render);

// A reload of a logged-in tab: trade the stored refresh token for a fresh access token first.
(async () => {
  if (hasSession()) {
    try {
      await refresh();
    } catch {
      /* a refused token already ended the session; a 503 is shown by the page's own request */
    }
  }
  render();
})();
