/** A patient's file: records by kind, versions, new notes, document upload with progress. */
import { formatFrenchDate, formatFrenchDateTime } from "../dates.ts";
import { clear, h } from "../dom.ts";
import { explain, form, Invalid, selectField, statusLine } from "../forms.ts";
import { t, type MessageKey } from "../i18n/index.ts";
import * as sdk from "../sdk.ts";
import { link, page, requireUnlocked, section } from "../shell.ts";
import { bilanForm, programForm, sessionNoteForm } from "./notes.ts";

const KINDS: sdk.NoteKind[] = ["bilan", "session-note", "exercise-program"];
const DOCUMENT_KINDS: sdk.DocumentKind[] = ["prescription", "imaging", "letter", "report", "document"];
/** The types the SDK accepts (libs/client sniff_content_type); checked again on the bytes. */
const ACCEPTED = "application/pdf,image/jpeg,image/png";

function kindLabel(kind: string): string {
  return t(`kind.${kind}` as MessageKey);
}

/** Downloads a decrypted document through a blob: URL revoked right after the click. */
export async function download(record: sdk.RecordSummary, status: HTMLElement): Promise<void> {
  try {
    const blob = await sdk.downloadDocument(record.record_id, (done, total) => {
      status.textContent = `${Math.floor((100 * done) / Math.max(total, 1))} %`;
    });
    const url = URL.createObjectURL(blob);
    const anchor = h("a", { href: url, download: record.filename ?? record.title });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    status.textContent = "";
  } catch (error) {
    status.textContent = explain(error);
  }
}

function recordItem(record: sdk.RecordSummary, status: HTMLElement): HTMLElement {
  const history = h("ol", { class: "versions", hidden: true });
  const toggle = h("button", { type: "button", class: "link", "aria-expanded": "false" },
    t("patient.history"));
  toggle.addEventListener("click", () => void (async () => {
    const open = toggle.getAttribute("aria-expanded") === "true";
    toggle.setAttribute("aria-expanded", String(!open));
    history.hidden = open;
    if (open) return;
    clear(history);
    try {
      for (const version of await sdk.recordHistory(record.record_id)) {
        history.append(h("li", {}, t("patient.version", { n: version.version }), " · ",
          formatFrenchDateTime(version.created_at)));
      }
    } catch (error) {
      history.append(h("li", {}, explain(error)));
    }
  })());
  const isDocument = !KINDS.includes(record.kind as sdk.NoteKind);
  return h("li", {},
    h("span", { class: "kind" }, kindLabel(record.kind)), " ",
    h("strong", {}, record.title), " ",
    h("span", { class: "muted" }, record.date ? formatFrenchDate(record.date)
      : formatFrenchDateTime(record.created_at)), " ",
    isDocument ? h("button", { type: "button", class: "link",
      onclick: () => void download(record, status) }, t("patient.download")) : null,
    toggle, history);
}

function uploadForm(fileId: string, onSaved: () => void): HTMLFormElement {
  const kind = selectField({ name: "kind", label: "upload.kind" },
    DOCUMENT_KINDS.map((k) => [k, `kind.${k}` as MessageKey]));
  const fileInput = h("input", { type: "file", accept: ACCEPTED });
  const fileField = {
    name: "file", control: fileInput,
    element: h("div", { class: "field" }), setError: (_: string | null) => undefined,
  };
  // A labelled file input, wired by hand: its value is a File, not text.
  fileInput.id = "upload-file";
  fileInput.required = true;
  const fileError = h("p", { class: "error", id: "upload-file-error", hidden: true });
  fileField.element.append(h("label", { for: "upload-file" }, t("upload.file")), fileInput, fileError);
  fileField.setError = (message) => {
    fileError.textContent = message ?? "";
    fileError.hidden = message === null;
    if (message === null) {
      fileInput.removeAttribute("aria-invalid");
      fileInput.removeAttribute("aria-describedby");
    } else {
      fileInput.setAttribute("aria-invalid", "true");
      fileInput.setAttribute("aria-describedby", fileError.id);
    }
  };
  // Encrypting, then sending: while sending, the bar shows what the server acknowledged (a
  // dropped connection resumes from there, so the bar never goes back to zero).
  const progress = h("progress", { max: 100, value: 0, "aria-label": t("upload.progress") });
  const phaseLine = h("p", { class: "muted upload-phase", "aria-live": "polite" });
  let shown = "";
  return form({
    fields: [kind, fileField], submit: "upload.submit", extra: [progress, phaseLine],
    async onSubmit() {
      const file = fileInput.files?.[0];
      if (file === undefined) throw new Invalid({ file: t("error.required") });
      if (!ACCEPTED.split(",").includes(file.type)) throw new Invalid({ file: t("error.file") });
      try {
        await sdk.uploadDocument(fileId, kind.control.value as sdk.DocumentKind, file, (done, total, phase) => {
          const percent = Math.floor((100 * done) / Math.max(total, 1));
          progress.value = percent;
          progress.dataset.phase = phase;
          // Announced per 10 % step only, so that a screen reader is not flooded.
          const text = t(phase === "sending" ? "upload.sending" : "upload.encrypting",
            { percent: Math.floor(percent / 10) * 10 });
          if (text !== shown) phaseLine.textContent = shown = text;
        });
      } catch (error) {
        phaseLine.textContent = shown = "";
        if (error instanceof sdk.UploadFailed) throw new Invalid({ file: t("upload.failed") });
        throw error;
      }
      phaseLine.textContent = shown = "";
      fileInput.value = "";
      onSaved();
    },
  });
}

export async function patientPage(params: Record<string, string>): Promise<void> {
  if (!requireUnlocked()) return;
  const fileId = params.id as string;
  const status = statusLine();
  const list = h("div", { "aria-live": "polite" });
  const refresh = async (): Promise<void> => {
    clear(list);
    try {
      const records = await sdk.listRecords(fileId);
      if (records.length === 0) {
        list.append(h("p", {}, t("patient.noRecords")));
        return;
      }
      for (const kind of [...KINDS, ...DOCUMENT_KINDS]) {
        const ofKind = records.filter((r) => r.kind === kind);
        if (ofKind.length === 0) continue;
        list.append(h("h3", {}, kindLabel(kind)),
          h("ul", { class: "records" }, ...ofKind.map((r) => recordItem(r, status))));
      }
    } catch (error) {
      status.textContent = explain(error);
    }
  };
  let name = fileId;
  try {
    name = (await sdk.getPatient(fileId)).identity.name;
  } catch (error) {
    status.textContent = explain(error);
  }
  const saved = (): void => void refresh();
  const editors = KINDS.map((kind) => {
    const builder = { "bilan": bilanForm, "session-note": sessionNoteForm,
      "exercise-program": programForm }[kind];
    return h("details", {}, h("summary", {}, `${t("patient.new")} : ${kindLabel(kind)}`),
      builder(fileId, saved));
  });
  page(t("patient.title", { name }),
    h("nav", { "aria-label": t("patient.records") }, h("ul", { class: "inline" },
      h("li", {}, link(`/pro/patients/${encodeURIComponent(fileId)}/partage`, "sharing.title")),
      h("li", {}, link(`/pro/patients/${encodeURIComponent(fileId)}/audit`, "audit.title")))),
    status,
    section(t("patient.records"), list),
    section(t("patient.new"), ...editors),
    section(t("upload.title"), uploadForm(fileId, saved)));
  await refresh();
}
