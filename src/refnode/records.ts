// Reads the reference nodes' record files (JSON lines) for the checker. I/O only: it must never judge
// the records (that is checker.ts).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isRecordLine, type RecordLine } from './checker.js';

export type { RecordLine } from './checker.js';

/**
 * Every record of every `*.jsonl` file in `dir` (files in name order, lines in file order). A last line
 * that does not parse is a write cut short (a node killed mid-line) and is skipped; any other line that
 * does not parse is an error naming the file and line. JSON lines that are not records (isRecordLine:
 * e.g. a director's audit.jsonl in the same directory) are skipped.
 */
export async function readRecords(dir: string): Promise<RecordLine[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.jsonl')).sort();
  const out: RecordLine[] = [];
  for (const f of files) {
    const path = join(dir, f);
    const lines = (await readFile(path, 'utf8')).split('\n');
    // A complete file ends with '\n', so its last element is ''.
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as string;
      if (line === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        if (i === lines.length - 1) break; // truncated last line
        throw new Error(`${path}:${i + 1}: not a JSON record`, { cause: err });
      }
      if (isRecordLine(value)) out.push(value);
    }
  }
  return out;
}
