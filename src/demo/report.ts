import { createHash } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';

export type ReportFormat = 'csv' | 'json';

const ROWS_PER_SLICE = 5000;

/** One row of the demo report; a pure function of the title and the row number. */
function reportRow(title: string, index: number, format: ReportFormat): string {
  const value = (index * 2654435761) % 1000003;
  return format === 'csv'
    ? `${index},${JSON.stringify(title)},${value}\n`
    : `${index === 1 ? '' : ','}{"row":${index},"title":${JSON.stringify(title)},"value":${value}}`;
}

/**
 * Builds the demo report deterministically from its input, streaming it through SHA-256 in
 * slices so a million rows neither hold memory nor block the event loop, and stops when aborted.
 */
export async function buildReport(
  input: { title: string; rows: number; format?: ReportFormat },
  signal: AbortSignal,
  progress: (percent: number, message?: string) => Promise<void> = async () => {},
) {
  const format = input.format ?? 'csv';
  const hash = createHash('sha256');
  let bytes = 0;
  const write = (text: string) => {
    hash.update(text);
    bytes += Buffer.byteLength(text);
  };
  write(format === 'csv' ? 'row,title,value\n' : '[');
  for (let start = 1; start <= input.rows; start += ROWS_PER_SLICE) {
    signal.throwIfAborted();
    let slice = '';
    const end = Math.min(input.rows, start + ROWS_PER_SLICE - 1);
    for (let index = start; index <= end; index++) slice += reportRow(input.title, index, format);
    write(slice);
    // Report at each tenth of the way, not at every slice.
    const tenth = Math.floor((end * 10) / input.rows);
    if (tenth > Math.floor(((start - 1) * 10) / input.rows) && end < input.rows) await progress(tenth * 10, `${end} of ${input.rows} rows`);
    await yieldToEventLoop();
  }
  if (format === 'json') write(']');
  return { title: input.title, format, rowCount: input.rows, bytes, sha256: hash.digest('hex') };
}

/** The synchronous estimate: rows times the widest row, for a 20-character title; nothing is built. */
export function estimateBytes(rows: number, format: ReportFormat): number {
  const widestRow = reportRow('x'.repeat(20), rows, format).length + 6;
  return (format === 'csv' ? 16 : 2) + rows * widestRow;
}

/** The index terms of a report's title: its words (letters and digits), lowercased, each once, in order. */
export function indexTerms(title: string): string[] {
  return [...new Set(title.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [])];
}
