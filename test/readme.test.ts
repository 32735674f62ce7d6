import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/* The README keeps what a user of the package reads first: how to install it, write, test, run and upgrade a service, and what changed. */

const repo = resolve(import.meta.dirname, '..');
const readme = readFileSync(join(repo, 'README.md'), 'utf8');
const section = (title: string) => {
  const start = readme.indexOf(`\n## ${title}\n`);
  if (start === -1) return undefined;
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
};

describe('the README', () => {
  it('has the sections a user of the package needs, Install first', () => {
    const titles = [...readme.matchAll(/^## (.+)$/gm)].map((match) => match[1]);
    expect(titles[0]).toBe('Install');
    for (const title of ['Install', 'Writing your own service', 'The asyncfirst command', 'Testing your handlers', 'Deploying', 'Configuration', 'Changelog']) {
      expect(titles).toContain(title);
    }
    expect(section('Install')).toContain('npm install asyncfirst');
    expect(section('Install')).toContain('npx asyncfirst init my-service');
    expect(section('Writing your own service')).toContain('npx asyncfirst generate');
    expect(section('Testing your handlers')).toContain("from 'asyncfirst/testing'");
    for (const topic of ['SHUTDOWN_GRACE_MS', 'asyncfirst backup', 'asyncfirst restore', 'asyncfirst migrate', 'volume'])
      expect(section('Deploying')).toContain(topic);
    const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string };
    expect(section('Changelog')).toContain(`### ${version}`);
  });

  it('says why each run-time dependency is there: every package a user installs with asyncfirst', () => {
    const { dependencies } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const table = section('What each dependency does') ?? '';
    expect(Object.keys(dependencies).filter((name) => !table.includes(`\`${name}\``))).toEqual([]);
  });

  it('documents every environment variable the configuration reads', () => {
    const config = readFileSync(join(repo, 'src/config.ts'), 'utf8');
    const names = config.slice(config.indexOf('const ENV_NAMES')).split('\n};')[0]!;
    const variables = [...names.matchAll(/: '([A-Z][A-Z0-9_]+)'/g)].map((match) => match[1]!);
    expect(variables.length).toBeGreaterThan(30);
    expect(variables.filter((variable) => !section('Configuration')?.includes(`| \`${variable}\` |`))).toEqual([]);
  });
});
