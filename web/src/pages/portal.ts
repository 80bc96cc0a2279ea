/**
 * The patient and family portal (phone first): accept an invitation by code or QR, create
 * the account, read what is shared, see who accessed the file, leave the share.
 *
 * The invitation code is held in this module's memory between the code screen and the
 * account screens: never in the URL, never in storage.
 */
import { formatFrenchDate, formatFrenchDateTime } from "../dates.ts";
import { clear, h } from "../dom.ts";
import { explain, form, inputField, statusLine } from "../forms.ts";
import { t, type MessageKey } from "../i18n/index.ts";
import * as sdk from "../sdk.ts";
import { go, keys, link, page, section } from "../shell.ts";
import { download } from "./patient.ts";
import { auditTable } from "./sharing.ts";

let pendingCode: string | null = null;

/** Called after the portal's login: redeems a code typed before the account existed. */
export async function redeemPending(): Promise<void> {
  if (pendingCode === null) return;
  const code = pendingCode;
  pendingCode = null;
  const { fileId } = await sdk.acceptInvitation(code);
  go(`/portail/dossiers/${encodeURIComponent(fileId)}`);
}

export function portalHome(): void {
  page(t("portal.title"),
    h("p", {}, t("portal.intro")),
    h("ul", { class: "choices" },
      h("li", {}, link("/portail/invitation", "portal.accept", { class: "button" })),
      h("li", {}, link("/portail/connexion", "portal.login", { class: "button secondary" }))));
}

interface BarcodeDetectorLike {
  detect(source: HTMLVideoElement): Promise<{ rawValue: string }[]>;
}

/** Scans a QR code with the camera where the browser has BarcodeDetector; else says so. */
async function scan(into: HTMLInputElement, area: HTMLElement): Promise<void> {
  const Detector = (globalThis as { BarcodeDetector?: new (o: object) => BarcodeDetectorLike })
    .BarcodeDetector;
  clear(area);
  if (Detector === undefined || navigator.mediaDevices?.getUserMedia === undefined) {
    area.append(h("p", { role: "status" }, t("portal.scanUnavailable")));
    return;
  }
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  const video = h("video", { playsinline: true, muted: true, "aria-label": t("portal.scan") });
  video.srcObject = stream;
  area.append(video);
  await video.play();
  const detector = new Detector({ formats: ["qr_code"] });
  try {
    for (let tries = 0; tries < 600; tries += 1) {
      const [found] = await detector.detect(video);
      if (found !== undefined) {
        into.value = found.rawValue;
        into.focus();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    for (const track of stream.getTracks()) track.stop();
    clear(area);
  }
}

export function acceptPage(): void {
  const code = inputField({ name: "code", label: "portal.code", required: true,
    hint: "portal.codeHint", autocomplete: "off" });
  code.control.setAttribute("autocapitalize", "characters");
  const camera = h("div", {});
  const scanButton = h("button", { type: "button", class: "secondary" }, t("portal.scan"));
  scanButton.addEventListener("click", () => void scan(code.control, camera).catch((error) => {
    camera.append(h("p", { role: "status" }, explain(error)));
  }));
  page(t("portal.accept"),
    form({
      fields: [code], submit: "portal.acceptSubmit", extra: [scanButton, camera],
      async onSubmit() {
        pendingCode = code.control.value.trim();
        code.control.value = "";
        if (keys.unlocked) await redeemPending();
        else go("/portail/inscription");
      },
    }));
}

export async function sharedFilesPage(): Promise<void> {
  if (!keys.unlocked) {
    go("/portail/connexion", true);
    return;
  }
  const body = h("div", {});
  page(t("portal.shared"), body);
  try {
    await redeemPending();
    const files = await sdk.sharedFiles();
    body.append(files.length === 0 ? h("p", {}, t("portal.none"))
      : h("ul", { class: "cards" }, ...files.map((f) => h("li", {},
        link(`/portail/dossiers/${encodeURIComponent(f.fileId)}`, f.label)))));
  } catch (error) {
    body.append(h("p", { role: "status" }, explain(error)));
  }
}

function programView(program: sdk.ExerciseProgram): HTMLElement {
  return h("article", { class: "program" },
    h("h3", {}, `${t("kind.exercise-program")} · ${formatFrenchDate(program.date)}`),
    h("ol", {}, ...program.exercises.map((e) => h("li", {},
      h("strong", {}, e.name), ` — ${e.sets} × ${e.reps}`,
      e.frequency ? ` · ${e.frequency}` : "",
      e.instructions ? h("p", {}, e.instructions) : null))),
    program.notes ? h("p", {}, program.notes) : null);
}

export async function sharedFilePage(params: Record<string, string>): Promise<void> {
  if (!keys.unlocked) {
    go("/portail/connexion", true);
    return;
  }
  const fileId = params.id as string;
  const status = statusLine();
  const records = h("div", { "aria-live": "polite" });
  const audit = h("div", {});
  const leave = h("button", { type: "button", class: "danger" }, t("portal.leave"));
  const confirm = h("button", { type: "button", class: "danger", hidden: true }, t("portal.leaveConfirm"));
  leave.addEventListener("click", () => { confirm.hidden = false; confirm.focus(); });
  confirm.addEventListener("click", () => void sdk.leaveShare(fileId).then(() => {
    status.textContent = t("portal.left");
    go("/portail/dossiers");
  }, (error: unknown) => { status.textContent = explain(error); }));
  page(t("portal.shared"), status,
    section(t("portal.shared"), records),
    section(t("portal.audit"), audit),
    section(t("portal.leave"), leave, confirm));
  try {
    for (const record of await sdk.listRecords(fileId)) {
      if (record.kind === "exercise-program") {
        records.append(programView(await sdk.readNote(record.record_id) as sdk.ExerciseProgram));
      } else {
        records.append(h("p", {}, `${t(`kind.${record.kind}` as MessageKey)} · ${record.title} · `,
          formatFrenchDateTime(record.created_at), " ",
          record.content_type === "application/json" ? null : h("button", {
            type: "button", class: "secondary", onclick: () => void download(record, status),
          }, t("patient.download"))));
      }
    }
  } catch (error) {
    records.append(h("p", {}, explain(error)));
  }
  try {
    audit.append(...auditTable(await sdk.auditTimeline(fileId)));
  } catch (error) {
    audit.append(h("p", {}, explain(error)));
  }
}
