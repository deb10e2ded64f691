// #/console/users: every account (search, pages), its role changed or the account disabled, each confirmed.
import { request } from "../api.js";
import { alertBox, announce, formatDate, h } from "../dom.js";
import { adminOnly, consoleNav, confirmDialog } from "./console.js";

const PAGE_SIZE = 20;
const DEBOUNCE_MS = 300;

export const usersPage = adminOnly(async (ctx) => {
  const state = { q: ctx.query.get("q") || "", tokens: [""], at: 0 }; // tokens[i]: the cursor of page i
  const first = await request(listPath(state.q, ""));
  const error = alertBox();
  const search = h("input", { type: "search", id: "users-q", value: state.q, autocomplete: "off", spellcheck: "false", "aria-describedby": "users-q-hint", "aria-controls": "users-table" });
  const count = h("p", { class: "hint", role: "status", id: "users-count" });
  const tbody = h("tbody");
  const previousButton = h("button", { type: "button", class: "button secondary", onclick: () => show(state.at - 1) }, "Previous page");
  const nextButton = h("button", { type: "button", class: "button secondary older", onclick: () => show(state.at + 1) }, "Next page");
  let generation = 0;

  function listPath(q, token) {
    const query = new URLSearchParams({ page_size: String(PAGE_SIZE) });
    if (q) query.set("q", q);
    if (token) query.set("page_token", token);
    return `/admin/users?${query}`;
  }

  async function show(at) {
    const mine = ++generation;
    error.show("");
    let page;
    try {
      page = await request(listPath(state.q, state.tokens[at]));
    } catch (failure) {
      if (mine === generation) error.show(`The accounts could not be loaded. ${failure.message}`);
      return;
    }
    if (mine !== generation || ctx.signal.aborted) return;
    state.at = at;
    state.tokens.length = at + 1;
    if (page.next_page_token) state.tokens.push(page.next_page_token);
    render(page);
  }

  function render(page) {
    const items = page.items || [];
    const total = typeof page.total === "number" ? page.total : items.length;
    const shownFrom = state.at * PAGE_SIZE + 1;
    count.textContent = items.length
      ? `${total} ${total === 1 ? "account" : "accounts"}${state.q ? ` matching “${state.q}”` : ""}; showing ${shownFrom} to ${shownFrom + items.length - 1}.`
      : state.q ? `No account matches “${state.q}”.` : "No accounts.";
    tbody.replaceChildren(...items.map(row));
    previousButton.hidden = state.at === 0;
    nextButton.hidden = !page.next_page_token;
  }

  function row(user) {
    const label = user.display_name || user.email;
    const select = h(
      "select",
      { id: `role-${user.id}`, "aria-label": `Role of ${user.email}`, "data-role": user.role },
      h("option", { value: "user", selected: user.role === "user" }, "User"),
      h("option", { value: "admin", selected: user.role === "admin" }, "Administrator"),
    );
    select.addEventListener("change", async () => {
      const role = select.value;
      const ok = await confirmDialog({
        title: role === "admin" ? `Make ${label} an administrator?` : `Make ${label} a user?`,
        body: role === "admin"
          ? [`${user.email} will be able to open this console: train and promote models, and change or disable any account, including yours.`]
          : [`${user.email} will no longer be able to open this console or use the administrators' API; their analyses stay.`],
        confirm: role === "admin" ? "Make administrator" : "Make user",
        danger: role === "user",
      });
      if (!ok) {
        select.value = user.role;
        return;
      }
      await change(user, { role }, `${user.email} is now ${role === "admin" ? "an administrator" : "a user"}.`, () => (select.value = user.role));
    });
    const toggle = h(
      "button",
      { type: "button", class: `button secondary${user.disabled ? "" : " danger-outline"}`, "aria-label": `${user.disabled ? "Enable" : "Disable"} ${user.email}` },
      user.disabled ? "Enable…" : "Disable…",
    );
    toggle.addEventListener("click", async () => {
      const disabling = !user.disabled;
      const ok = await confirmDialog({
        title: disabling ? `Disable ${label}?` : `Enable ${label}?`,
        body: disabling
          ? [`${user.email} is logged out everywhere at once: every token of the account is refused from its next request, and it cannot log in until an administrator enables it again.`, "Nothing of the account is deleted."]
          : [`${user.email} will be able to log in again. Sessions ended when it was disabled do not come back.`],
        confirm: disabling ? "Disable the account" : "Enable the account",
        danger: disabling,
      });
      if (ok) await change(user, { disabled: disabling }, `${user.email} is ${disabling ? "disabled" : "enabled again"}.`);
    });
    return h(
      "tr",
      { "data-user": user.email, "data-disabled": String(user.disabled) },
      h("th", { scope: "row", class: "email" }, user.email),
      h("td", {}, user.display_name),
      h("td", {}, select),
      h("td", { class: "number" }, String(user.computations)),
      h("td", {}, formatDate(user.created_at)),
      h("td", {}, h("span", { class: `status-word ${user.disabled ? "status-failed" : "status-succeeded"}` }, user.disabled ? "Disabled" : "Active"), " ", toggle),
    );
  }

  async function change(user, body, doneText, undo = () => {}) {
    error.show("");
    try {
      await request(`/admin/users/${encodeURIComponent(user.id)}`, { method: "PATCH", json: body });
    } catch (failure) {
      undo();
      error.show(failure.status === 409
        ? `Not changed: ${user.email} is the last active administrator. Make another account an administrator first, then try again.`
        : `Not changed. ${failure.message}`);
      error.focus?.();
      return;
    }
    announce(doneText);
    notice.textContent = doneText;
    notice.hidden = false;
    await show(state.at);
  }

  let timer = 0;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.q = search.value.trim();
      state.tokens = [""];
      show(0);
    }, DEBOUNCE_MS);
  });
  ctx.onLeave(() => clearTimeout(timer));
  const notice = h("p", { class: "notice success", role: "status", hidden: true });

  render(first);
  if (first.next_page_token) state.tokens.push(first.next_page_token);

  return {
    title: "Users",
    node: h(
      "section",
      {},
      h("h1", {}, "Users"),
      consoleNav("#/console/users"),
      h(
        "form",
        { class: "card stack search", role: "search", onsubmit: (event) => event.preventDefault() },
        h("div", { class: "field" }, h("label", { for: "users-q" }, "Find an account"), h("p", { class: "hint", id: "users-q-hint" }, "Part of an e-mail address or a name; the list follows as you type."), search),
      ),
      notice,
      error,
      count,
      h(
        "div",
        { class: "table-scroll", role: "region", "aria-labelledby": "users-caption", tabindex: "0" },
        h(
          "table",
          { class: "data-table users-table", id: "users-table" },
          h("caption", { id: "users-caption" }, "Accounts, newest first"),
          h("thead", {}, h("tr", {}, ["E-mail", "Name", "Role", "Analyses", "Created", "Account"].map((name) => h("th", { scope: "col" }, name)))),
          tbody,
        ),
      ),
      h("nav", { class: "pager", "aria-label": "Account pages" }, previousButton, nextButton),
    ),
  };
});
