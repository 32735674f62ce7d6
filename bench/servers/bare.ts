// Bare Fastify: validates and answers 202 like asyncfirst, persists nothing.
import { newJobId } from '../../src/core/ids.js';
import { announce, rss, serveParent } from '../lib/child-side.js';
import { buildPeerServer } from './peer-server.js';

const server = buildPeerServer(async () => newJobId());
const url = await server.listen({ port: 0, host: '127.0.0.1' });
serveParent({ rss }, () => server.close());
announce({ url });
