// The error tables of docs/API.md (codes a node sends, with their HTTP status) and
// docs/CLIENT.md (codes the client raises itself), rendered from the one table in
// src/base/errors.ts. test/api/error-reference.test.ts fails while a document differs from
// its rendering, so a new code cannot go undocumented (REWRITE=1 regenerates both tables).

import { allErrorCodes, errorCodes, type ErrorCode } from '../base/errors.js';
import { httpStatusOf, isNodeErrorCode } from './errors.js';

export const errorTableMarkers = {
  start: '<!-- error-codes:start -->',
  end: '<!-- error-codes:end -->',
} as const;

export type ErrorTable = 'node' | 'client';

function codesOf(table: ErrorTable): ErrorCode[] {
  return allErrorCodes.filter((c) => isNodeErrorCode(c) === (table === 'node'));
}

/** The table's rows (header excluded), cell by cell, as they appear in the document. */
export function errorTableRows(table: ErrorTable): string[][] {
  return codesOf(table).map((code) => {
    const info = errorCodes[code];
    const cells = [`\`${code}\``];
    if (isNodeErrorCode(code)) cells.push(String(httpStatusOf[code]));
    cells.push(info.indefinite ? 'yes' : 'no', info.meaning.replace(/\|/g, '\\|'));
    return cells;
  });
}

export function renderErrorTable(table: ErrorTable): string {
  const header =
    table === 'node'
      ? ['code', 'HTTP', 'indefinite', 'meaning']
      : ['code', 'indefinite', 'meaning'];
  const rows = [header, ...errorTableRows(table)];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  const line = (r: readonly string[]) =>
    `| ${r.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`;
  return [
    line(header),
    `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`,
    ...rows.slice(1).map(line),
  ].join('\n');
}

/** The rows of the first Markdown table between the markers, cell by cell. */
export function documentedErrorRows(doc: string): string[][] | null {
  const i = doc.indexOf(errorTableMarkers.start);
  const j = doc.indexOf(errorTableMarkers.end);
  if (i < 0 || j < i) return null;
  return doc
    .slice(i + errorTableMarkers.start.length, j)
    .split('\n')
    .filter((l) => l.startsWith('|') && !/^\|[\s|-]+\|$/.test(l))
    .slice(1)
    .map((l) =>
      l
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim()),
    );
}

/**
 * What the document gets wrong about the table: codes missing from it, rows that differ from
 * the code (status, indefinite default or meaning), rows for codes that do not exist.
 */
export function errorTableProblems(doc: string, table: ErrorTable): string[] {
  const documented = documentedErrorRows(doc);
  if (documented === null)
    return [`no ${errorTableMarkers.start} ... ${errorTableMarkers.end} markers`];
  const byCode = new Map(documented.map((r) => [r[0] ?? '', r]));
  const problems: string[] = [];
  for (const row of errorTableRows(table)) {
    const code = row[0] as string;
    const seen = byCode.get(code);
    if (seen === undefined) problems.push(`${code} is not documented`);
    else if (seen.join(' | ') !== row.join(' | '))
      problems.push(
        `${code} is documented as "${seen.join(' | ')}", the code says "${row.join(' | ')}"`,
      );
    byCode.delete(code);
  }
  for (const code of byCode.keys()) problems.push(`${code} is documented but is no such code`);
  return problems;
}

/** The document with its table replaced by the rendering. */
export function rewriteErrorTable(doc: string, table: ErrorTable): string {
  const i = doc.indexOf(errorTableMarkers.start);
  const j = doc.indexOf(errorTableMarkers.end);
  if (i < 0 || j < i) throw new Error(`no ${errorTableMarkers.start} markers`);
  return `${doc.slice(0, i + errorTableMarkers.start.length)}\n\n${renderErrorTable(table)}\n\n${doc.slice(j)}`;
}
