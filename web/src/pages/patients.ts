/** The practitioner's patient list: encrypted search and the create form. */
import { formatFrenchDate } from "../dates.ts";
import { clear, h } from "../dom.ts";
import { explain, form, inputField, Invalid, statusLine } from "../forms.ts";
import { t } from "../i18n/index.ts";
import * as sdk from "../sdk.ts";
import { go, link, page, requireUnlocked, section } from "../shell.ts";
import { isoDate, validIns } from "../validate.ts";

function patientList(patients: sdk.Patient[]): HTMLElement {
  if (patients.length === 0) return h("p", {}, t("patients.none"));
  return h("ul", { class: "cards" }, ...patients.map((patient) => h("li", {},
    link(`/pro/patients/${encodeURIComponent(patient.id)}`, patient.identity.name),
    " ", h("span", { class: "muted" },
      t("patients.born", { date: formatFrenchDate(patient.identity.birth_date) })))));
}

export async function patientsPage(): Promise<void> {
  if (!requireUnlocked()) return;
  const results = h("div", { "aria-live": "polite" });
  const status = statusLine();
  const search = inputField({ name: "search", label: "patients.search", type: "search",
    hint: "patients.searchHint" });
  // Only the latest search shows: an earlier one still in flight (the list loaded on arrival)
  // must not append its results after it.
  let latest = 0;
  const load = async (text?: string): Promise<void> => {
    const mine = ++latest;
    clear(results);
    status.textContent = "";
    try {
      const found = await sdk.listPatients(text);
      if (mine === latest) results.replaceChildren(patientList(found));
    } catch (error) {
      if (mine === latest) status.textContent = explain(error);
    }
  };
  const name = inputField({ name: "name", label: "patients.name", required: true,
    autocomplete: "off" });
  const birth = inputField({ name: "birth", label: "patients.birthDate", required: true,
    hint: "form.dateHint", inputmode: "numeric" });
  const ins = inputField({ name: "ins", label: "patients.ins", hint: "patients.insHint",
    inputmode: "numeric" });
  page(t("patients.title"),
    section(t("patients.search"),
      form({ fields: [search], submit: "patients.searchSubmit",
        onSubmit: () => load(search.control.value.trim() || undefined) }),
      status, results),
    section(t("patients.create"),
      form({
        fields: [name, birth, ins], submit: "patients.createSubmit",
        async onSubmit() {
          const errors: Record<string, string> = {};
          const birthDate = isoDate(birth.control.value);
          if (birthDate === null) errors.birth = t("error.date");
          if (ins.control.value.trim() !== "" && !validIns(ins.control.value)) errors.ins = t("error.ins");
          if (Object.keys(errors).length > 0) throw new Invalid(errors);
          const patient = await sdk.createPatient({ name: name.control.value.trim(),
            birth_date: birthDate as string, ins: ins.control.value.trim() || undefined });
          go(`/pro/patients/${encodeURIComponent(patient.id)}`);
        },
      })));
  await load();
}
