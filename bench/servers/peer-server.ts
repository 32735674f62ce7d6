import Fastify, { type FastifyInstance } from 'fastify';
import { ACCEPTED_SCHEMA, BENCH_API_KEY, BENCH_PRINCIPAL, reportRequestSchema } from '../lib/shared.js';

/** What a peer does with an accepted request: returns the id of whatever it stored (or not). */
export type Enqueue = (job: { principal: string; key: string; body: unknown }) => Promise<string>;

/**
 * The comparison servers: one Fastify route, POST /reports, with the demo's JSON schema, the
 * same API-key check and Idempotency-Key requirement, and the same 202 answer and headers as
 * asyncfirst. What differs is only `enqueue`: nothing (bare), BullMQ's queue.add, pg-boss's send.
 */
const PROBLEM_SCHEMA = { type: 'object', properties: { type: { type: 'string' }, title: { type: 'string' }, status: { type: 'integer' } } };

export function buildPeerServer(enqueue: Enqueue): FastifyInstance {
  const server = Fastify({ logger: false });
  const keys = new Map([[BENCH_API_KEY, BENCH_PRINCIPAL]]);
  server.decorateRequest('benchPrincipal', '');
  server.post(
    '/reports',
    {
      schema: { body: reportRequestSchema(), response: { 202: ACCEPTED_SCHEMA, 400: PROBLEM_SCHEMA, 401: PROBLEM_SCHEMA } },
      onRequest: async (request, reply) => {
        const key = request.headers['x-api-key'];
        const principal = typeof key === 'string' ? keys.get(key) : undefined;
        if (!principal) return reply.code(401).type('application/problem+json').send({ type: 'urn:bench:unauthorized', title: 'Unauthorized', status: 401 });
        (request as unknown as { benchPrincipal: string }).benchPrincipal = principal;
      },
    },
    async (request, reply) => {
      const key = request.headers['idempotency-key'];
      if (typeof key !== 'string' || key === '') {
        return reply
          .code(400)
          .type('application/problem+json')
          .send({ type: 'urn:bench:idempotency-key-missing', title: 'Idempotency-Key missing', status: 400 });
      }
      const id = await enqueue({ principal: (request as unknown as { benchPrincipal: string }).benchPrincipal, key, body: request.body });
      const location = `/jobs/${id}`;
      reply.code(202).headers({ location, 'x-job-id': id, 'retry-after': '1' });
      return { status: 'accepted', job_id: id, location };
    },
  );
  return server;
}
