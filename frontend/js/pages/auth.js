// Log in and register.
import { login, request } from "../api.js";
import { alertBox, announce, field, fieldError, h, onSubmit } from "../dom.js";

const PASSWORD_RULE = "8 to 128 characters. Common passwords and ones built from your name or email are refused; a few unrelated words make a strong one.";

/** A new password typed twice (named `name` and "confirm"); `samePassword` checks the two agree. */
export function newPasswordFields(name, label, repeatLabel) {
  return [
    field(label, { type: "password", name, autocomplete: "new-password", required: true, minlength: 8 }, PASSWORD_RULE),
    field(repeatLabel, { type: "password", name: "confirm", autocomplete: "new-password", required: true }),
  ];
}

export function samePassword(form, name) {
  if (form[name].value !== form.confirm.value) {
    throw fieldError(form.confirm, "The two passwords differ. Please type the same password twice.");
  }
}

function notice(ctx) {
  return ctx.app.notice ? h("p", { class: "notice info" }, ctx.app.notice) : null;
}

export function loginPage(ctx) {
  const error = alertBox();
  const form = h(
    "form",
    { class: "card stack", "aria-labelledby": "login-title" },
    field("Email", { type: "email", name: "email", autocomplete: "username", required: true, value: ctx.app.lastEmail || "" }),
    field("Password", { type: "password", name: "password", autocomplete: "current-password", required: true }),
    error,
    h("button", { type: "submit", class: "button" }, "Log in"),
  );
  onSubmit(form, error, async () => {
    try {
      await login(form.email.value.trim(), form.password.value);
    } finally {
      form.password.value = "";
    }
    ctx.app.user = await request("/users/me");
    announce(`Logged in as ${ctx.app.user.display_name}.`);
    const next = ctx.app.returnTo || "/";
    ctx.app.returnTo = null;
    ctx.go(next);
  }, form.password);
  return {
    title: "Log in",
    node: h(
      "section",
      { class: "narrow" },
      h("h1", { id: "login-title" }, "Log in"),
      notice(ctx),
      form,
      h("p", {}, "New here? ", h("a", { href: "#/register" }, "Create an account"), "."),
    ),
  };
}

export function registerPage(ctx) {
  const error = alertBox();
  const form = h(
    "form",
    { class: "card stack", "aria-labelledby": "register-title" },
    field("Display name", { name: "display_name", autocomplete: "nickname", required: true, maxlength: 200 }),
    field("Email", { type: "email", name: "email", autocomplete: "email", required: true }),
    newPasswordFields("password", "Password", "Repeat the password"),
    error,
    h("button", { type: "submit", class: "button" }, "Create account"),
  );
  onSubmit(form, error, async () => {
    samePassword(form, "password");
    const email = form.email.value.trim();
    await request("/auth/register", {
      method: "POST",
      auth: false,
      json: { email, password: form.password.value, display_name: form.display_name.value.trim() },
      messages: { 409: "An account with this email already exists. Log in instead, or use another email." },
    });
    ctx.app.notice = "Your account is ready. Log in to continue.";
    ctx.app.lastEmail = email;
    ctx.go("/login");
  });
  return {
    title: "Create an account",
    node: h(
      "section",
      { class: "narrow" },
      h("h1", { id: "register-title" }, "Create an account"),
      form,
      h("p", {}, "Already registered? ", h("a", { href: "#/login" }, "Log in"), "."),
    ),
  };
}
