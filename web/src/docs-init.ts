/**
 * Starts the self-hosted Swagger UI on /docs. An external file because the CSP forbids
 * inline scripts; the document URL comes from a data attribute the page carries.
 */
interface SwaggerUIBundleType {
  (options: Record<string, unknown>): unknown;
  presets: { apis: unknown };
}

const bundle = (globalThis as unknown as { SwaggerUIBundle: SwaggerUIBundleType }).SwaggerUIBundle;
bundle({
  url: document.body.dataset.openapiUrl ?? "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [bundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  // No call to the public validator: /docs works offline and talks to this origin only.
  validatorUrl: null,
  tryItOutEnabled: false,
});
