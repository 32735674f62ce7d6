import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import type { OpenApiDocument } from '../contract/load.js';

/** GET /openapi.json, GET /openapi.yaml and Swagger UI at /docs, all from the served document. */
export async function registerDocumentRoutes(server: FastifyInstance, served: OpenApiDocument): Promise<void> {
  await server.register(swagger, { mode: 'static', specification: { document: served as never } });
  await server.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });
  server.get('/openapi.json', async (_request, reply) => reply.type('application/json; charset=utf-8').send(server.swagger()));
  server.get('/openapi.yaml', async (_request, reply) => reply.type('application/yaml; charset=utf-8').send(server.swagger({ yaml: true })));
}
