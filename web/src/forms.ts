/**
 * Accessible forms: every control has a visible <label>, hints and errors are tied to it by
 * aria-describedby, invalid controls say so (aria-invalid), and a failed submit puts an
 * error summary (role="alert") at the top with links that move focus to each field.
 */
import { h, uid } from "./dom.ts";
import { isMessageKey, t, type MessageKey } from "./i18n/index.ts";
import { DecryptionError } from "@ecrin/e2ee";
import {
  Conflict, EcrinError, IntegrityError, InvalidCredentials, InvalidInput, NotFound, NotLoggedIn, PermissionDenied,
  RateLimited, SecondFactorRequired, ServerError, SessionRevoked, Unavailable,
} from "@ecrin/e2ee/client";
import { SdkPending } from "./sdk.ts";

type Control = HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;

export interface Field<C extends Control = Control> {
  name: string;
  control: C;
  element: HTMLElement;
  setError(message: string | null): void;
}

export interface FieldOptions {
  name: string;
  label: MessageKey;
  labelVars?: Record<string, string | number>;
  hint?: MessageKey;
  required?: boolean;
  type?: string;
  autocomplete?: string;
  inputmode?: string;
  value?: string;
  list?: string;
}

function wire<C extends Control>(options: FieldOptions, control: C): Field<C> {
  const id = control.id || uid(options.name);
  control.id = id;
  control.name = options.name;
  if (options.required) control.required = true;
  const label = h("label", { for: id }, t(options.label, options.labelVars),
    options.required ? h("span", { class: "required" }, ` (${t("form.required")})`) : null);
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const hint = options.hint ? h("p", { class: "hint", id: hintId }, t(options.hint)) : null;
  const error = h("p", { class: "error", id: errorId, hidden: true });
  const describe = (withError: boolean): void => {
    const ids = [hint ? hintId : null, withError ? errorId : null].filter(Boolean).join(" ");
    if (ids) control.setAttribute("aria-describedby", ids);
    else control.removeAttribute("aria-describedby");
  };
  describe(false);
  const element = h("div", { class: "field" }, label, hint, control, error);
  return {
    name: options.name, control, element,
    setError(message) {
      error.textContent = message ?? "";
      error.hidden = message === null;
      if (message === null) control.removeAttribute("aria-invalid");
      else control.setAttribute("aria-invalid", "true");
      describe(message !== null);
    },
  };
}

export function inputField(options: FieldOptions): Field<HTMLInputElement> {
  const input = h("input", {
    type: options.type ?? "text", autocomplete: options.autocomplete ?? "off",
    inputmode: options.inputmode, list: options.list, spellcheck: options.type === "text" ? "false" : undefined,
  });
  if (options.value !== undefined) input.value = options.value;
  return wire(options, input);
}

export function textAreaField(options: FieldOptions): Field<HTMLTextAreaElement> {
  const area = h("textarea", { rows: 4 });
  if (options.value !== undefined) area.value = options.value;
  return wire(options, area);
}

export function selectField(options: FieldOptions, choices: [string, MessageKey][]
): Field<HTMLSelectElement> {
  const select = h("select", {}, ...choices.map(([value, label]) => h("option", { value }, t(label))));
  if (options.value !== undefined) select.value = options.value;
  return wire(options, select);
}

/** Thrown by a submit handler: field name -> message. */
export class Invalid extends Error {
  readonly errors: Record<string, string>;
  constructor(errors: Record<string, string>) {
    super("invalid form");
    this.errors = errors;
  }
}

export interface FormOptions {
  fields: Field[];
  submit: MessageKey;
  extra?: HTMLElement[];
  /** The form's body when it is not just the fields in order (fieldsets, added rows). */
  layout?: HTMLElement[];
  onSubmit: () => Promise<void>;
}

/** A status line for results and errors that screen readers announce. */
export function statusLine(): HTMLElement {
  return h("p", { class: "status", role: "status", "aria-live": "polite" });
}

/**
 * The SDK's errors, which speak English to developers, as a sentence for the user: by error
 * class, most specific first. Integrity failures never say which check failed (the SDK does
 * not either); input errors keep the SDK's message, which names the field.
 */
const EXPLAINED: [new (...args: never[]) => Error, MessageKey][] = [
  [InvalidCredentials, "error.credentials"],
  [SecondFactorRequired, "error.secondFactor"],
  [SessionRevoked, "error.session"],
  [NotLoggedIn, "error.session"],
  [PermissionDenied, "error.denied"],
  [NotFound, "error.missing"],
  [Conflict, "error.conflict"],
  [RateLimited, "error.rateLimited"],
  [Unavailable, "error.unavailable"],
  [IntegrityError, "error.integrity"],
  [DecryptionError, "error.integrity"],
  [ServerError, "error.server"],
];

export function explain(error: unknown): string {
  if (error instanceof SdkPending) return t("error.sdkPending");
  // The server's problem slug says the most: each has its sentence in both languages
  // (tests/web/test_problem_messages.py checks every slug the services can send).
  const problem = error instanceof EcrinError && error.slug !== undefined ? `problem.${error.slug}` : "";
  if (isMessageKey(problem)) return t(problem, { message: (error as EcrinError).message });
  for (const [kind, key] of EXPLAINED) if (error instanceof kind) return t(key);
  if (error instanceof InvalidInput) return t("error.invalid", { message: error.message });
  if (error instanceof TypeError && /fetch/i.test(error.message)) return t("error.unavailable");
  return t("error.generic", { message: error instanceof Error ? error.message : String(error) });
}

export function form(options: FormOptions): HTMLFormElement {
  const summary = h("div", { class: "error-summary", role: "alert", tabindex: -1, hidden: true });
  const status = statusLine();
  const button = h("button", { type: "submit" }, t(options.submit));
  const element = h("form", { novalidate: true }, summary,
    ...(options.layout ?? options.fields.map((field) => field.element)), ...(options.extra ?? []),
    button, status);
  element.addEventListener("submit", (event) => {
    event.preventDefault();
    void (async () => {
      for (const field of options.fields) field.setError(null);
      summary.hidden = true;
      status.textContent = t("form.working");
      button.disabled = true;
      element.setAttribute("aria-busy", "true");
      try {
        const missing: Record<string, string> = {};
        for (const field of options.fields) {
          if (field.control.required && field.control.value.trim() === "") {
            missing[field.name] = t("error.required");
          }
        }
        if (Object.keys(missing).length > 0) throw new Invalid(missing);
        await options.onSubmit();
        status.textContent = "";
      } catch (error) {
        status.textContent = "";
        if (error instanceof Invalid) {
          showSummary(summary, options.fields, error.errors);
        } else {
          status.textContent = explain(error);
        }
      } finally {
        button.disabled = false;
        element.removeAttribute("aria-busy");
      }
    })();
  });
  return element;
}

function showSummary(summary: HTMLElement, fields: Field[], errors: Record<string, string>): void {
  while (summary.firstChild) summary.removeChild(summary.firstChild);
  const items = fields.filter((field) => errors[field.name] !== undefined).map((field) => {
    const message = errors[field.name] as string;
    field.setError(message);
    const link = h("a", { href: `#${field.control.id}` }, message);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      field.control.focus();
    });
    return h("li", {}, link);
  });
  summary.append(h("p", {}, t("form.errors")), h("ul", {}, ...items));
  summary.hidden = false;
  summary.focus();
}
