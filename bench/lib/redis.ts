import type { ConnectionOptions } from 'bullmq';
import { REDIS_HOST, REDIS_PORT } from './shared.js';

/*
 * BullMQ 6 does not depend on a Redis driver: `ioredis` is an optional peer dependency, and in
 * ESM BullMQ cannot load it by itself, so the harness constructs the client. The import is
 * dynamic so that the typecheck and `--quick` keep working where ioredis is not installed (the
 * BullMQ targets are then skipped with a line saying why).
 */

type RedisConstructor = new (options: Record<string, unknown>) => ConnectionOptions & { quit(): Promise<unknown>; disconnect(): void };

let constructorPromise: Promise<RedisConstructor> | undefined;

async function loadRedis(): Promise<RedisConstructor> {
  const specifier: string = 'ioredis';
  const module = (await import(specifier)) as { default?: RedisConstructor; Redis?: RedisConstructor };
  const redis = module.Redis ?? module.default;
  if (!redis) throw new Error('ioredis exports no Redis class');
  return redis;
}

/** Why BullMQ cannot run here, or undefined when ioredis loads. */
export async function bullmqUnavailable(): Promise<string | undefined> {
  try {
    constructorPromise ??= loadRedis();
    await constructorPromise;
    return undefined;
  } catch {
    constructorPromise = undefined;
    return "BullMQ 6 needs the optional peer 'ioredis', which is not installed (npm install --no-save ioredis, or add it to devDependencies)";
  }
}

/** A new ioredis connection as BullMQ wants it (maxRetriesPerRequest: null). */
export async function redisConnection(): Promise<ConnectionOptions & { quit(): Promise<unknown>; disconnect(): void }> {
  constructorPromise ??= loadRedis();
  const Redis = await constructorPromise;
  return new Redis({ host: REDIS_HOST, port: REDIS_PORT, maxRetriesPerRequest: null });
}
