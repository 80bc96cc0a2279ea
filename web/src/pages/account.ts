/**
 * Sign-up (recovery key shown once), login with the second factor, unlock. Shared by the
 * practitioner workspace and the portal; `area` says where to go next.
 */
import { h } from "../dom.ts";
import { form, inputField, Invalid, selectField } from "../forms.ts";
import { t } from "../i18n/index.ts";
import * as sdk from "../sdk.ts";
import { areaOf, go, keys, link, page, section } from "../shell.ts";
import { MIN_PASSPHRASE, validEmail } from "../validate.ts";

export type Area = "pro" | "portail";

function home(area: Area): string {
  return area === "pro" ? "/pro/patients" : "/portail/dossiers";
}

function passphraseErrors(passphrase: string, confirm: string | null): Record<string, string> {
  const errors: Record<string, string> = {};
  if (passphrase.length < MIN_PASSPHRASE) errors.passphrase = t("error.passphraseShort");
  else if (confirm !== null && confirm !== passphrase) errors.confirm = t("error.passphraseMismatch");
  return errors;
}

export function signupPage(area: Area, after?: () => void): void {
  const email = inputField({ name: "email", label: "form.email", type: "email", required: true,
    autocomplete: "username" });
  const passphrase = inputField({ name: "passphrase", label: "form.passphrase", type: "password",
    required: true, autocomplete: "new-password", hint: "form.passphraseHint" });
  const confirm = inputField({ name: "confirm", label: "form.passphraseConfirm",
    type: "password", required: true, autocomplete: "new-password" });
  const role = area === "portail"
    ? selectField({ name: "role", label: "portal.role" },
      [["patient", "rel.patient"], ["representative", "rel.representative"]])
    : null;
  const fields = [email, passphrase, confirm, ...(role ? [role] : [])];
  page(area === "pro" ? t("signup.title") : t("portal.createAccount"),
    form({
      fields, submit: "signup.submit",
      async onSubmit() {
        const errors = passphraseErrors(passphrase.control.value, confirm.control.value);
        if (!validEmail(email.control.value)) errors.email = t("error.email");
        if (Object.keys(errors).length > 0) throw new Invalid(errors);
        const chosen = (role?.control.value ?? "practitioner") as sdk.Role;
        const { recoveryKey } = await sdk.signup(email.control.value.trim(),
          passphrase.control.value, chosen);
        passphrase.control.value = "";
        confirm.control.value = "";
        recoveryPage(recoveryKey, after ?? (() => go(`/${area}/connexion`)));
      },
    }),
    h("p", {}, link(`/${area}/connexion`, "signup.haveAccount")));
}

/** The recovery key, once: printable, never stored; continuing needs a confirmation. */
export function recoveryPage(recoveryKey: string, next: () => void): void {
  const confirm = h("input", { type: "checkbox", id: "recovery-ok" });
  const button = h("button", { type: "button", disabled: true, onclick: next }, t("recovery.continue"));
  confirm.addEventListener("change", () => { button.disabled = !confirm.checked; });
  page(t("recovery.title"),
    h("p", {}, t("recovery.intro")),
    h("p", { class: "secret", translate: "no" }, h("code", {}, recoveryKey)),
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => window.print() },
      t("recovery.print"))),
    h("p", { class: "check" }, confirm, h("label", { for: "recovery-ok" }, t("recovery.confirm"))),
    button);
}

export function loginPage(area: Area): void {
  const email = inputField({ name: "email", label: "form.email", type: "email", required: true,
    autocomplete: "username" });
  const passphrase = inputField({ name: "passphrase", label: "form.passphrase", type: "password",
    required: true, autocomplete: "current-password" });
  const totp = inputField({ name: "totp", label: "login.totp", hint: "login.totpHint",
    inputmode: "numeric", autocomplete: "one-time-code" });
  totp.element.hidden = true;
  page(t("login.title"),
    form({
      fields: [email, passphrase, totp], submit: "login.submit",
      async onSubmit() {
        if (!validEmail(email.control.value)) throw new Invalid({ email: t("error.email") });
        try {
          const session = await sdk.login(email.control.value.trim(), passphrase.control.value,
            totp.control.value.trim() || undefined);
          passphrase.control.value = "";
          keys.unlock(session);
          go(home(areaOf(session.role))); // a parent who came in by /pro lands in the portal
        } catch (error) {
          if (error instanceof sdk.SecondFactorNeeded) {
            totp.element.hidden = false;
            throw new Invalid({ totp: t("login.totpHint") });
          }
          throw error;
        }
      },
    }),
    h("p", {}, link(`/${area}/inscription`, "login.noAccount")));
}

export function unlockPage(area: Area): void {
  const passphrase = inputField({ name: "passphrase", label: "form.passphrase", type: "password",
    required: true, autocomplete: "current-password" });
  page(t("unlock.title"),
    h("p", {}, t("unlock.intro")),
    form({
      fields: [passphrase], submit: "unlock.submit",
      async onSubmit() {
        const session = await sdk.unlock(passphrase.control.value);
        passphrase.control.value = "";
        keys.unlock(session);
        go(home(areaOf(session.role)));
      },
    }),
    section(t("login.title"), h("p", {}, link(`/${area}/connexion`, "login.title"))));
}
