// Preloaded into a drain child (node --import): when the process exits, one stderr line with what
// it wrote, read from /proc/self/io (Linux), so that the parent can compare what two versions of
// the code write per job. Plain JavaScript: it loads before tsx, in children of any commit.
import { readFileSync } from 'node:fs';

process.on('exit', () => {
  try {
    const io = Object.fromEntries(
      readFileSync('/proc/self/io', 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split(': '))
        .map(([name, value]) => [name, Number(value)]),
    );
    process.stderr.write(`\nasyncfirst-bench-io ${JSON.stringify({ writeBytes: io.write_bytes, writeCalls: io.syscw })}\n`);
  } catch {
    // not Linux: nothing to report
  }
});
