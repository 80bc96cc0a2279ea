/** Sharing a patient's file (invite with code + QR, grant to a verified colleague, revoke) and its audit. */
import { formatFrenchDate, formatFrenchDateTime, parseFrenchDate } from "../dates.ts";
import { clear, h } from "../dom.ts";
import { explain, form, inputField, Invalid, selectField, statusLine } from "../forms.ts";
import { t, type MessageKey } from "../i18n/index.ts";
import { qrCode } from "../qr.ts";
import * as sdk from "../sdk.ts";
import { link, page, requireUnlocked, section } from "../shell.ts";

/** The invitation, once: code in large type and as a QR code, printable; never stored. */
function invitationCard(invitation: sdk.Invitation): HTMLElement {
  return h("div", { class: "invitation", role: "group", "aria-label": t("sharing.code") },
    h("p", {}, t("sharing.codeIntro")),
    h("p", { class: "secret", translate: "no" }, h("code", {}, invitation.code)),
    qrCode(invitation.code, t("sharing.qr")),
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => window.print() },
      t("sharing.print"))));
}

function memberList(overview: sdk.SharingOverview, onRevoked: () => void, status: HTMLElement
): HTMLElement[] {
  const revokeButton = (id: string): HTMLButtonElement => h("button", {
    type: "button", class: "danger",
    onclick: () => void (async () => {
      try {
        await sdk.revoke(id);
        status.textContent = t("sharing.revoked");
        onRevoked();
      } catch (error) {
        status.textContent = explain(error);
      }
    })(),
  }, t("sharing.revoke"));
  const members = overview.members.length === 0 ? h("p", {}, t("sharing.none"))
    : h("ul", {}, ...overview.members.map((m) => h("li", {},
      t(`rel.${m.relationship}` as MessageKey), " · ", h("code", {}, m.account_id), " ",
      m.relationship === "owner" ? null : revokeButton(m.grant_id))));
  const pending = overview.pending.length === 0 ? h("p", {}, t("sharing.none"))
    : h("ul", {}, ...overview.pending.map((p) => h("li", {},
      t(`rel.${p.relationship}` as MessageKey), " · ", formatFrenchDateTime(p.expires_at), " ",
      revokeButton(p.invitation_id))));
  return [h("h3", {}, t("sharing.members")), members, h("h3", {}, t("sharing.pending")), pending];
}

export async function sharingPage(params: Record<string, string>): Promise<void> {
  if (!requireUnlocked()) return;
  const fileId = params.id as string;
  const status = statusLine();
  const overview = h("div", { "aria-live": "polite" });
  const refresh = async (): Promise<void> => {
    clear(overview);
    try {
      overview.append(...memberList(await sdk.sharingOverview(fileId), () => void refresh(), status));
    } catch (error) {
      overview.append(h("p", {}, explain(error)));
    }
  };
  const shown = h("div", { "aria-live": "polite" });
  const relationship = selectField({ name: "relationship", label: "sharing.relationship" },
    [["parent", "rel.parent"], ["patient", "rel.patient"], ["guardian", "rel.guardian"]]);
  const until = inputField({ name: "until", label: "sharing.until", hint: "sharing.untilHint",
    inputmode: "numeric" });
  // A parent's access ends at the patient's 18th birthday: offered, the practitioner may shorten it.
  void sdk.getPatient(fileId).then((patient) => {
    const birth = patient.identity.birth_date;
    const [year, month, day] = birth.split("-");
    if (/^\d{4}-\d{2}-\d{2}$/.test(birth) && until.control.value === "") {
      const adult = month === "02" && day === "29" ? `${Number(year) + 18}-03-01`
        : `${Number(year) + 18}-${month}-${day}`;
      until.control.value = formatFrenchDate(adult);
    }
  }, () => undefined);
  const account = inputField({ name: "account", label: "sharing.account", required: true });
  const fingerprint = inputField({ name: "fingerprint", label: "sharing.fingerprint", required: true });
  const colleague = selectField({ name: "colleague", label: "sharing.relationship" },
    [["care_team", "rel.care_team"], ["replacement", "rel.replacement"], ["secretary", "rel.secretary"]]);
  page(t("sharing.title"),
    h("p", {}, link(`/pro/patients/${encodeURIComponent(fileId)}`, "patient.records")),
    status,
    section(t("sharing.invite"),
      form({ fields: [relationship, until], submit: "sharing.inviteSubmit",
        async onSubmit() {
          clear(shown);
          let validUntil: string | undefined;
          if (until.control.value.trim() !== "") {
            const iso = parseFrenchDate(until.control.value);
            if (iso === null) throw new Invalid({ until: t("error.date") });
            validUntil = iso;
          } else if (relationship.control.value === "parent") {
            throw new Invalid({ until: t("error.required") });
          }
          const invitation = await sdk.invite(fileId, relationship.control.value as sdk.Relationship,
            validUntil);
          shown.append(invitationCard(invitation));
          void refresh();
        } }),
      shown),
    section(t("sharing.grant"),
      form({ fields: [account, fingerprint, colleague], submit: "sharing.grantSubmit",
        async onSubmit() {
          if (!/^[0-9a-f-]{36}$/i.test(account.control.value.trim())) {
            throw new Invalid({ account: t("error.required") });
          }
          await sdk.grant(fileId, account.control.value.trim(), fingerprint.control.value.trim(),
            colleague.control.value as sdk.Relationship);
          void refresh();
        } })),
    section(t("sharing.members"), overview));
  await refresh();
}

/** The audit timeline, verified (hash chain) by the SDK; shared by the portal. */
export function auditTable(timeline: sdk.AuditTimeline): HTMLElement[] {
  const verdict = h("p", { class: timeline.verified ? "ok" : "warning" },
    t(timeline.verified ? "audit.verified" : "audit.unverified"));
  if (timeline.events.length === 0) return [verdict, h("p", {}, t("audit.none"))];
  // On a phone the table scrolls inside its own region, not the page.
  return [verdict, h("div", { class: "table-scroll", role: "region", tabindex: 0,
    "aria-label": t("audit.title") }, h("table", {},
    h("thead", {}, h("tr", {}, ...(["audit.when", "audit.who", "audit.action", "audit.outcome"] as const)
      .map((key) => h("th", { scope: "col" }, t(key))))),
    h("tbody", {}, ...timeline.events.map((event) => h("tr", {},
      h("td", {}, formatFrenchDateTime(event.at)), h("td", {}, event.actor),
      h("td", {}, event.action), h("td", {}, event.outcome))))))];
}

export async function auditPage(params: Record<string, string>): Promise<void> {
  if (!requireUnlocked()) return;
  const fileId = params.id as string;
  const body = h("div", {});
  page(t("audit.title"),
    h("p", {}, link(`/pro/patients/${encodeURIComponent(fileId)}`, "patient.records")), body);
  try {
    body.append(...auditTable(await sdk.auditTimeline(fileId)));
  } catch (error) {
    body.append(h("p", { role: "status" }, explain(error)));
  }
}
