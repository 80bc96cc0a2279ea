/**
 * QR codes drawn as SVG nodes (no data: URL, no innerHTML), from uqr's module matrix.
 * Used for invitation codes and TOTP enrolment: the code stays on the page and on paper.
 */
import { encode } from "uqr";
import { svg } from "./dom.ts";

export function qrCode(text: string, label: string): SVGElement {
  const { data, size } = encode(text, { ecc: "M", border: 2 });
  const root = svg("svg", { viewBox: `0 0 ${size} ${size}`, role: "img", class: "qr",
    "shape-rendering": "crispEdges" });
  root.setAttribute("aria-label", label);
  root.append(svg("rect", { width: size, height: size, fill: "#fff" }));
  // One path for all dark modules keeps the DOM small (an invitation QR is ~40x40).
  let d = "";
  data.forEach((row, y) => row.forEach((dark, x) => {
    if (dark) d += `M${x} ${y}h1v1h-1z`;
  }));
  root.append(svg("path", { d, fill: "#000" }));
  return root;
}
