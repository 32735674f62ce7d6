import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { demoOptions, reportHandlers } from '../src/demo/service.js';
import { PermanentJobError } from '../src/handlers.js';
import { createTestApp } from '../src/testing/index.js';

/* The logger option (a pino instance or pino options) and LOG_FORMAT. */

const ALICE = { 'x-api-key': 'key-a' };

describe('logging', () => {
  it('logs through the pino instance a service gives', async () => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const logger = pino({ level: 'info', base: { service: 'reports' } }, destination);
    const service = await createTestApp({ ...demoOptions({ apiKeys: 'alice:key-a' }), logger });
    try {
      expect(service.app.log).toBe(logger);
      const accepted = await service.submit('POST', '/reports', { title: 'Q3', rows: 10 }, ALICE);
      expect(accepted.status).toBe(202);
      expect(lines.some((line) => line.msg === 'incoming request' && line.service === 'reports')).toBe(true);
    } finally {
      await service.close();
    }
  });

  it("logs each job's life at info: accepted (or replayed) with its id, started, and how it ended with its duration", async () => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const service = await createTestApp({ ...demoOptions({ apiKeys: 'alice:key-a' }), logger: pino({ level: 'info' }, destination) });
    try {
      const headers = { ...ALICE, 'idempotency-key': 'a0c3f5a2-8a4e-4a53-9b7e-1d2c3b4a5f60' };
      const accepted = await service.submit('POST', '/reports', { title: 'Q3', rows: 10 }, headers);
      const jobId = (accepted.body as { job_id: string }).job_id;
      await service.submit('POST', '/reports', { title: 'Q3', rows: 10 }, headers);
      await service.runUntilIdle();
      const about = (msg: string) => lines.filter((line) => line.msg === msg && line.jobId === jobId);
      expect(about('job accepted')).toEqual([expect.objectContaining({ operation: 'createReport', level: 30 })]);
      expect(about('job replayed')).toHaveLength(1);
      expect(about('job started')).toEqual([expect.objectContaining({ operation: 'createReport', attempt: 1, level: 30 })]);
      const succeeded = about('job succeeded');
      expect(succeeded).toEqual([expect.objectContaining({ operation: 'createReport', attempt: 1, level: 30 })]);
      expect(typeof succeeded[0]?.durationMs).toBe('number');
    } finally {
      await service.close();
    }
  });

  it('logs a retried attempt at info and a failed job at warn, each with its operation, attempt and duration; an enqueued job is logged as accepted', async () => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const createReport: typeof reportHandlers.createReport = async (input, context) => {
      if (input.body.title === 'doomed') throw new PermanentJobError('this report cannot be made');
      if (input.body.title === 'flaky' && context.job?.attempt === 1) throw new Error('the disk was busy');
      return reportHandlers.createReport(input, context);
    };
    const service = await createTestApp({
      ...demoOptions({ apiKeys: 'alice:key-a' }),
      handlers: { ...reportHandlers, createReport },
      logger: pino({ level: 'info' }, destination),
    });
    try {
      const flaky = await service.app.enqueue('createReport', { body: { title: 'flaky', rows: 10 } }, { principal: 'alice' });
      const doomed = await service.app.enqueue('createReport', { body: { title: 'doomed', rows: 10 } }, { principal: 'alice' });
      await service.runUntilIdle();
      const about = (msg: string, jobId: string) => lines.filter((line) => line.msg === msg && line.jobId === jobId);
      expect(about('job accepted', flaky.jobId)).toEqual([expect.objectContaining({ operation: 'createReport', level: 30 })]);
      const retried = about('job retried', flaky.jobId);
      expect(retried).toEqual([
        expect.objectContaining({
          operation: 'createReport',
          attempt: 1,
          level: 30,
          retryInMs: expect.any(Number),
          err: expect.objectContaining({ message: 'the disk was busy' }),
        }),
      ]);
      expect(typeof retried[0]?.durationMs).toBe('number');
      expect(about('job started', flaky.jobId).map((line) => line.attempt)).toEqual([1, 2]);
      expect(about('job succeeded', flaky.jobId)).toEqual([expect.objectContaining({ operation: 'createReport', attempt: 2, level: 30 })]);
      const failed = about('job failed', doomed.jobId);
      expect(failed).toEqual([
        expect.objectContaining({ operation: 'createReport', attempt: 1, level: 40, err: expect.objectContaining({ message: 'this report cannot be made' }) }),
      ]);
      expect(typeof failed[0]?.durationMs).toBe('number');
      expect(about('job succeeded', doomed.jobId)).toEqual([]);
    } finally {
      await service.close();
    }
  });

  it('takes pino options over LOG_LEVEL', async () => {
    const service = await createTestApp({ ...demoOptions({ apiKeys: 'alice:key-a' }), logger: { level: 'warn' } });
    try {
      expect(service.app.log.level).toBe('warn');
    } finally {
      await service.close();
    }
  });

  it('LOG_FORMAT is json or pretty; anything else is a start error naming it', () => {
    expect(loadConfig({}).logFormat).toBe('json');
    expect(loadConfig({ LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty');
    expect(() => loadConfig({ LOG_FORMAT: 'yaml' })).toThrow('LOG_FORMAT="yaml" must be json or pretty');
  });

  it('LOG_FORMAT=pretty writes readable lines instead of JSON', async () => {
    const repo = resolve(import.meta.dirname, '..');
    const dir = mkdtempSync(join(tmpdir(), 'asyncfirst-log-'));
    const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'src/demo/main.ts'), 'serve'], {
      cwd: repo,
      env: {
        ...process.env,
        LOG_FORMAT: 'pretty',
        PORT: '0',
        API_KEYS: 'alice:key-a',
        DATABASE_URL: join(dir, 'jobs.db'),
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output = await new Promise<string>((done, fail) => {
      let text = '';
      const timer = setTimeout(() => fail(new Error(`no listening line: ${text}`)), 20_000);
      child.stdout.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes('asyncfirst demo — reports listening')) {
          clearTimeout(timer);
          done(text);
        }
      });
    });
    const exited = new Promise((done) => child.on('exit', done));
    child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
    const line = output.split('\n').find((candidate) => candidate.includes('asyncfirst demo — reports listening'))!;
    expect(line).toMatch(/^\[\d{2}:\d{2}:\d{2}\.\d{3}\] INFO \(\d+\): asyncfirst demo — reports listening/);
    expect(output.trimStart().startsWith('{')).toBe(false);
  });
});
