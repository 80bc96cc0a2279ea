/** Sessions and the second factor. */
import { formatFrenchDateTime } from "../dates.ts";
import { clear, h } from "../dom.ts";
import { explain, form, inputField } from "../forms.ts";
import { t } from "../i18n/index.ts";
import { qrCode } from "../qr.ts";
import * as sdk from "../sdk.ts";
import { page, requireUnlocked, section } from "../shell.ts";

/**
 * Ending another session is a sensitive action: the gateway wants a step-up (a fresh
 * challenge signed with the passphrase-derived login key, and the second factor when
 * enrolled). The SDK does the signing; the passphrase never leaves the browser.
 */
function stepUpForm(sessionId: string, done: () => Promise<void>): HTMLFormElement {
  const passphrase = inputField({ name: "stepup-passphrase", label: "form.passphrase", type: "password",
    required: true, autocomplete: "current-password" });
  const code = inputField({ name: "stepup-code", label: "settings.stepUpCode", hint: "settings.stepUpHint",
    autocomplete: "one-time-code" });
  return form({ fields: [passphrase, code], submit: "settings.end",
    async onSubmit() {
      await sdk.endSession(sessionId, { passphrase: passphrase.control.value, code: code.control.value });
      await done();
    } });
}

export async function settingsPage(): Promise<void> {
  if (!requireUnlocked()) return;
  const sessions = h("div", { "aria-live": "polite" });
  const refresh = async (): Promise<void> => {
    clear(sessions);
    try {
      const list = await sdk.sessions();
      sessions.append(h("ul", {}, ...list.map((s) => {
        const item = h("li", {}, formatFrenchDateTime(s.created_at), " ", s.user_agent ?? "");
        if (s.current) item.append(h("strong", {}, ` (${t("settings.current")})`));
        else item.append(h("button", { type: "button", class: "link",
          onclick: () => item.append(stepUpForm(s.id, refresh)) }, t("settings.end")));
        return item;
      })));
    } catch (error) {
      sessions.append(h("p", { role: "status" }, explain(error)));
    }
  };
  const totpArea = h("div", { "aria-live": "polite" });
  const start = h("button", { type: "button" }, t("settings.totpEnable"));
  start.addEventListener("click", () => void (async () => {
    clear(totpArea);
    try {
      const enrolment = await sdk.enableTotp();
      const code = inputField({ name: "totp", label: "login.totp", required: true,
        inputmode: "numeric", autocomplete: "one-time-code" });
      totpArea.append(h("p", {}, t("settings.totpIntro")), qrCode(enrolment.uri, t("settings.totp")),
        h("p", {}, t("settings.totpSecret"), " ",
          h("code", { class: "totp-secret", translate: "no" }, enrolment.secret)),
        form({ fields: [code], submit: "settings.totpConfirm",
          async onSubmit() {
            const backup = await sdk.confirmTotp(code.control.value.trim());
            clear(totpArea);
            totpArea.append(h("p", {}, t("settings.totpDone")),
              h("ul", { class: "secret" }, ...backup.map((c) => h("li", {}, h("code", {}, c)))));
          } }));
    } catch (error) {
      totpArea.append(h("p", {}, explain(error)));
    }
  })());
  page(t("settings.title"),
    section(t("settings.sessions"), sessions),
    section(t("settings.totp"), start, totpArea));
  await refresh();
}
