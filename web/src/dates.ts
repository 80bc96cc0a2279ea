/**
 * Dates as French people write them: JJ/MM/AAAA. The SDK and the records hold ISO dates
 * (YYYY-MM-DD, as the Python models); only the screens speak JJ/MM/AAAA.
 */

const FRENCH = /^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*$/;
const ISO = /^(\d{4})-(\d{2})-(\d{2})$/;

function valid(year: number, month: number, day: number): boolean {
  if (month < 1 || month > 12 || day < 1 || year < 1850 || year > 2200) return false;
  const probe = new Date(Date.UTC(year, month - 1, day));
  return probe.getUTCFullYear() === year && probe.getUTCMonth() === month - 1
    && probe.getUTCDate() === day;
}

function pad(value: number, width = 2): string {
  return String(value).padStart(width, "0");
}

/** "7/3/2019", "07.03.2019" or "07-03-2019" -> "2019-03-07"; null if not a real date. */
export function parseFrenchDate(text: string): string | null {
  const match = FRENCH.exec(text);
  if (match === null) return null;
  const [day, month, year] = [Number(match[1]), Number(match[2]), Number(match[3])];
  return valid(year, month, day) ? `${pad(year, 4)}-${pad(month)}-${pad(day)}` : null;
}

/** "2019-03-07" -> "07/03/2019". Throws on anything that is not an ISO date. */
export function formatFrenchDate(iso: string): string {
  const match = ISO.exec(iso.slice(0, 10));
  if (match === null) throw new RangeError(`not an ISO date: ${iso}`);
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (!valid(year, month, day)) throw new RangeError(`not a real date: ${iso}`);
  return `${pad(day)}/${pad(month)}/${pad(year, 4)}`;
}

/** A timestamp as "07/03/2019 14:05" in the device's time zone (audit timelines). */
export function formatFrenchDateTime(timestamp: string | Date): string {
  const date = typeof timestamp === "string" ? new Date(timestamp) : timestamp;
  if (Number.isNaN(date.getTime())) throw new RangeError("not a timestamp");
  return `${pad(date.getDate())}/${pad(date.getMonth() + 1)}/${pad(date.getFullYear(), 4)} `
    + `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Today's date in the device's time zone, ISO. */
export function todayIso(now: Date = new Date()): string {
  return `${pad(now.getFullYear(), 4)}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}
