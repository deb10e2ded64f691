// The account: details, usage count, display name and password changes.
import { request } from "../api.js";
import { alertBox, announce, field, fieldError, formatDate, h, onSubmit } from "../dom.js";
import { newPasswordFields, samePassword } from "./auth.js";

export async function accountPage(ctx) {
  let user = (ctx.app.user = await request("/users/me"));
  const details = h("dl", { class: "details" });
  const showDetails = () =>
    details.replaceChildren(
      h("dt", {}, "Display name"), h("dd", { "data-field": "display_name" }, user.display_name),
      h("dt", {}, "Email"), h("dd", { "data-field": "email" }, user.email),
      h("dt", {}, "Analyses run"), h("dd", { "data-field": "computations" }, String(user.computations)),
      h("dt", {}, "Member since"), h("dd", {}, formatDate(user.created_at)),
    );
  showDetails();

  const saved = (form, text) => {
    const note = form.querySelector(".notice.success");
    note.textContent = text;
    note.hidden = false;
    announce(text);
  };

  const nameError = alertBox();
  const nameForm = h(
    "form",
    { class: "card stack", "aria-labelledby": "name-title" },
    h("h2", { id: "name-title" }, "Display name"),
    field("Display name", { name: "display_name", autocomplete: "nickname", required: true, maxlength: 200, value: user.display_name }),
    nameError,
    h("p", { class: "notice success", role: "status", hidden: true }),
    h("button", { type: "submit", class: "button" }, "Save name"),
  );
  onSubmit(nameForm, nameError, async () => {
    user = ctx.app.user = await request("/users/me", { method: "PATCH", json: { display_name: nameForm.display_name.value.trim() } });
    showDetails();
    saved(nameForm, "Your display name is saved.");
  });

  const passwordError = alertBox();
  const passwordForm = h(
    "form",
    { class: "card stack", "aria-labelledby": "password-title" },
    h("h2", { id: "password-title" }, "Change password"),
    field("Current password", { type: "password", name: "current_password", autocomplete: "current-password", required: true }),
    newPasswordFields("new_password", "New password", "Repeat the new password"),
    passwordError,
    h("p", { class: "notice success", role: "status", hidden: true }),
    h("button", { type: "submit", class: "button" }, "Change password"),
  );
  onSubmit(passwordForm, passwordError, async () => {
    const form = passwordForm;
    samePassword(form, "new_password");
    try {
      await request("/users/me", {
        method: "PATCH",
        json: { current_password: form.current_password.value, new_password: form.new_password.value },
        messages: { 403: "Your current password is wrong." },
      });
    } catch (failure) {
      throw failure.status === 403 ? fieldError(form.current_password, failure.message) : failure;
    }
    form.reset();
    saved(form, "Your password is changed.");
  });

  return {
    title: "Account",
    node: h(
      "section",
      {},
      h("h1", {}, "Your account"),
      h("div", { class: "card" }, details),
      h("div", { class: "columns" }, nameForm, passwordForm),
    ),
  };
}
