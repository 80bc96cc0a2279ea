import { h } from "../dom.ts";
import { t } from "../i18n/index.ts";
import { link, page } from "../shell.ts";

export function home(): void {
  page(t("home.title"),
    h("p", { class: "lead" }, t("app.tagline")),
    h("p", {}, t("home.intro")),
    h("ul", { class: "choices" },
      h("li", {}, link("/pro", "home.pro", { class: "button" })),
      h("li", {}, link("/portail", "home.portal", { class: "button" }))),
    h("p", {}, h("a", { href: "/docs" }, t("nav.docs"))));
}

export function notFound(): void {
  page(t("error.notFound"), h("p", {}, t("error.notFoundText")),
    h("p", {}, link("/", "nav.home")));
}
