/*
 * Progress of long work (a backup, the migrations) for a person at a terminal: one line, rewritten
 * in place, on stderr. When stderr is not a terminal (a pipe, a file, CI logs) there is none, so
 * scripts read only the command's result on stdout.
 */

/** A line on the terminal that long work rewrites as it goes. */
export interface TerminalProgress {
  /** Rewrites the line. */
  update(text: string): void;
  /** Rewrites the line one last time and ends it. */
  done(text: string): void;
}

/** The progress line on stderr, or undefined when stderr is not a terminal. */
export function terminalProgress(stream: NodeJS.WriteStream = process.stderr): TerminalProgress | undefined {
  if (stream.isTTY !== true) return undefined;
  // \r returns to the start of the line; ESC [K clears what a longer earlier text left.
  return {
    update: (text) => stream.write(`\r${text}\x1b[K`),
    done: (text) => stream.write(`\r${text}\x1b[K\n`),
  };
}
