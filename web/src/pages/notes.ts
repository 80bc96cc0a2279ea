/** The forms for the three note kinds: bilan, session note (NGAP acts), exercise programme. */
import { todayIso, formatFrenchDate } from "../dates.ts";
import { h, uid } from "../dom.ts";
import { type Field, form, inputField, Invalid, textAreaField } from "../forms.ts";
import { t } from "../i18n/index.ts";
import { actText, NGAP_CODES, normaliseAct } from "../ngap.ts";
import * as sdk from "../sdk.ts";
import { isoDate, wholeNumber } from "../validate.ts";

type Saved = (record: sdk.RecordSummary) => void;

function dateField(): Field<HTMLInputElement> {
  return inputField({ name: "date", label: "form.date", required: true, hint: "form.dateHint",
    inputmode: "numeric", value: formatFrenchDate(todayIso()) });
}

function requireDate(field: Field, errors: Record<string, string>): string {
  const iso = isoDate(field.control.value);
  if (iso === null) errors[field.name] = t("error.date");
  return iso ?? "";
}

function lines(text: string): string[] {
  return text.split("\n").map((line) => line.trim()).filter((line) => line !== "");
}

export function bilanForm(fileId: string, saved: Saved): HTMLFormElement {
  const date = dateField();
  const motif = textAreaField({ name: "motif", label: "bilan.motif", required: true });
  const prescription = inputField({ name: "prescription", label: "bilan.prescription" });
  const anamnesis = textAreaField({ name: "anamnesis", label: "bilan.anamnesis" });
  const exam = textAreaField({ name: "exam", label: "bilan.exam" });
  const diagnostic = textAreaField({ name: "diagnostic", label: "bilan.diagnostic" });
  const objectives = textAreaField({ name: "objectives", label: "bilan.objectives" });
  const plan = textAreaField({ name: "plan", label: "bilan.plan" });
  return form({
    fields: [date, motif, prescription, anamnesis, exam, diagnostic, objectives, plan],
    submit: "save",
    async onSubmit() {
      const errors: Record<string, string> = {};
      const iso = requireDate(date, errors);
      if (Object.keys(errors).length > 0) throw new Invalid(errors);
      saved(await sdk.createNote(fileId, "bilan", {
        date: iso, motif: motif.control.value.trim(),
        prescription_ref: prescription.control.value.trim() || undefined,
        anamnesis: anamnesis.control.value.trim(), clinical_exam: exam.control.value.trim(),
        diagnostic_kine: diagnostic.control.value.trim(),
        objectives: lines(objectives.control.value), plan: plan.control.value.trim(),
      }));
    },
  });
}

/** The NGAP suggestions as a <datalist>: the browser offers them, any code stays allowed. */
function ngapList(): HTMLDataListElement {
  return h("datalist", { id: uid("ngap") }, ...NGAP_CODES.map((code) =>
    h("option", { value: actText(code) }, code.label)));
}

export function sessionNoteForm(fileId: string, saved: Saved): HTMLFormElement {
  const list = ngapList();
  const date = dateField();
  const acts = inputField({ name: "acts", label: "note.acts", hint: "note.actsHint",
    list: list.id, autocomplete: "off" });
  const pain = inputField({ name: "pain", label: "note.pain", inputmode: "numeric" });
  const notes = textAreaField({ name: "notes", label: "note.notes" });
  return form({
    fields: [date, acts, pain, notes], extra: [list], submit: "save",
    async onSubmit() {
      const errors: Record<string, string> = {};
      const iso = requireDate(date, errors);
      const written = acts.control.value.split(",").map((a) => a.trim()).filter(Boolean);
      const normalised = written.map(normaliseAct);
      if (normalised.some((act) => act === null)) errors.acts = t("error.act");
      let painValue: number | undefined;
      if (pain.control.value.trim() !== "") {
        const value = wholeNumber(pain.control.value, 0, 10);
        if (value === null) errors.pain = t("error.pain");
        else painValue = value;
      }
      if (Object.keys(errors).length > 0) throw new Invalid(errors);
      saved(await sdk.createNote(fileId, "session-note", {
        date: iso, acts: normalised as string[], pain: painValue, notes: notes.control.value.trim(),
      }));
    },
  });
}

interface ExerciseFields {
  name: Field<HTMLInputElement>;
  sets: Field<HTMLInputElement>;
  reps: Field<HTMLInputElement>;
  frequency: Field<HTMLInputElement>;
  instructions: Field<HTMLTextAreaElement>;
}

function exerciseFields(n: number): ExerciseFields {
  return {
    name: inputField({ name: `ex${n}-name`, label: "program.name", required: true }),
    sets: inputField({ name: `ex${n}-sets`, label: "program.sets", inputmode: "numeric", value: "3" }),
    reps: inputField({ name: `ex${n}-reps`, label: "program.reps", inputmode: "numeric", value: "10" }),
    frequency: inputField({ name: `ex${n}-frequency`, label: "program.frequency" }),
    instructions: textAreaField({ name: `ex${n}-instructions`, label: "program.instructions" }),
  };
}

export function programForm(fileId: string, saved: Saved): HTMLFormElement {
  const date = dateField();
  const notes = textAreaField({ name: "notes", label: "program.notes" });
  const exercises: ExerciseFields[] = [exerciseFields(1)];
  const fieldsOf = (e: ExerciseFields): Field[] => [e.name, e.sets, e.reps, e.frequency, e.instructions];
  const fieldset = (e: ExerciseFields, n: number): HTMLFieldSetElement =>
    h("fieldset", {}, h("legend", {}, t("program.exercise", { n })), ...fieldsOf(e).map((f) => f.element));
  const group = h("div", {}, fieldset(exercises[0] as ExerciseFields, 1));
  const all: Field[] = [date, ...fieldsOf(exercises[0] as ExerciseFields), notes];
  const add = h("button", { type: "button", class: "secondary" }, t("program.add"));
  add.addEventListener("click", () => {
    const next = exerciseFields(exercises.length + 1);
    exercises.push(next);
    all.splice(all.length - 1, 0, ...fieldsOf(next));
    group.append(fieldset(next, exercises.length));
    next.name.control.focus();
  });
  // `all` grows as exercises are added, so the submit checks every row.
  const element = form({
    fields: all, submit: "save", layout: [date.element, group, add, notes.element],
    async onSubmit() {
      const errors: Record<string, string> = {};
      const iso = requireDate(date, errors);
      const list: sdk.Exercise[] = exercises.map((e) => {
        const sets = wholeNumber(e.sets.control.value, 1, 100);
        const reps = wholeNumber(e.reps.control.value, 1, 1000);
        if (e.name.control.value.trim() === "") errors[e.name.name] = t("error.required");
        if (sets === null) errors[e.sets.name] = t("error.number");
        if (reps === null) errors[e.reps.name] = t("error.number");
        return { name: e.name.control.value.trim(), sets: sets ?? 1, reps: reps ?? 1,
          frequency: e.frequency.control.value.trim(), instructions: e.instructions.control.value.trim() };
      });
      if (Object.keys(errors).length > 0) throw new Invalid(errors);
      saved(await sdk.createNote(fileId, "exercise-program",
        { date: iso, exercises: list, notes: notes.control.value.trim() }));
    },
  });
  return element;
}
