/**
 * Positions in the event log, one numbering for the jobs table (a job's seq is its acceptance's
 * place) and job_events (see the migration that made it): each is taken in the write transaction
 * of the group that writes it, after the head the group read at its first take. One writer holds
 * the file's write lock at a time, across processes too, so positions are handed out in commit
 * order and never twice. A group rolled back, or run again write by write, reads the head anew:
 * what a rolled-back write took is a gap, which readers of the log skip.
 */
export class LogPositions {
  private last: number | undefined;

  constructor(private readonly readHead: () => number) {}

  take(): number {
    this.last = (this.last ?? this.readHead()) + 1;
    return this.last;
  }

  /** At the start of every group's transaction. */
  reset(): void {
    this.last = undefined;
  }
}
