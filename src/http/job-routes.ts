import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { JOB_ID_PATTERN } from '../ids.js';
import type { Store } from '../store/store.js';
import { jobBody, jobHeaders } from './job-view.js';
import { ProblemError, problem } from './problems.js';
import type { Authenticate } from './security.js';

/** GET /jobs/{id} and DELETE /jobs/{id}: a principal sees and cancels its own jobs only. */
export function registerJobRoutes(
  server: FastifyInstance,
  deps: { store: Store; authenticate: Authenticate; cancelRunningJob: (jobId: string) => void },
): void {
  const notFound = (id: string) => new ProblemError('jobNotFound', `There is no job ${id} for this principal.`);
  const onRequest = async (request: FastifyRequest) => {
    request.principal = await deps.authenticate(request);
  };
  const send = (reply: FastifyReply, status: number, job: Parameters<typeof jobBody>[0]) =>
    reply.code(status).headers(jobHeaders(job)).type('application/json; charset=utf-8').send(jobBody(job));

  server.get<{ Params: { id: string } }>('/jobs/:id', { onRequest }, async (request, reply) => {
    const { id } = request.params;
    const job = JOB_ID_PATTERN.test(id) ? await deps.store.getJob(request.principal, id) : undefined;
    if (!job) throw notFound(id);
    return send(reply, 200, job);
  });

  server.delete<{ Params: { id: string } }>('/jobs/:id', { onRequest }, async (request, reply) => {
    const { id } = request.params;
    if (!JOB_ID_PATTERN.test(id)) throw notFound(id);
    const outcome = await deps.store.cancelJob(request.principal, id, Date.now(), problem('jobCanceled', 'DELETE /jobs/{id} canceled the job before it ran.'));
    switch (outcome.kind) {
      case 'not-found':
        throw notFound(id);
      case 'finished':
        throw new ProblemError('jobFinished', `Job ${id} has already finished (${outcome.job.status}); there is nothing to cancel.`, {
          extra: { jobStatus: outcome.job.status },
        });
      case 'canceled':
        return send(reply, 200, outcome.job);
      case 'signalled':
        // A worker in this process aborts the handler now; one in another process sees the flag at its next lease renewal.
        deps.cancelRunningJob(id);
        return send(reply, 202, outcome.job);
    }
  });
}
