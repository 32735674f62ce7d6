import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { ProblemError } from '../core/problems.js';
import type { IsOperator } from '../http/job-routes.js';
import type { Authenticate } from '../http/security.js';

/** The header the dashboard's page sends with every action: a cross-site form cannot set one, and a cross-site fetch that does is stopped by the browser's preflight. */
export const ACTION_HEADER = 'x-asyncfirst-dashboard';

/**
 * Every dashboard response: scripts, styles, images and requests from the dashboard's own origin
 * only, no inline script or style, no framing, no form posted elsewhere.
 */
export const DASHBOARD_SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** DASHBOARD_USER and DASHBOARD_PASSWORD: the HTTP basic credentials that act as an operator. */
export interface DashboardCredentials {
  user: string;
  password: string;
}

/** Who a dashboard request acts as: always an operator (every principal's jobs). */
export type DashboardAuthenticate = (request: FastifyRequest) => Promise<string>;

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * With credentials: HTTP basic with exactly those (a browser asks for them once and sends them on
 * every request of the page). Without: the service's own security handlers, and the principal must
 * be an operator (ADMIN_PRINCIPALS or the `operators` function).
 */
export function dashboardAuthenticator(
  credentials: DashboardCredentials | undefined,
  authenticate: Authenticate,
  isOperator: IsOperator,
): DashboardAuthenticate {
  if (credentials) {
    const expected = digest(`${credentials.user}:${credentials.password}`);
    return async (request) => {
      const header = request.headers.authorization ?? '';
      const space = header.indexOf(' ');
      const presented =
        space > 0 && header.slice(0, space).toLowerCase() === 'basic' ? Buffer.from(header.slice(space + 1).trim(), 'base64').toString('utf8') : '';
      if (!timingSafeEqual(digest(presented), expected)) {
        throw new ProblemError('unauthorized', 'The dashboard asks for the user and password of DASHBOARD_USER and DASHBOARD_PASSWORD (HTTP basic).', {
          headers: { 'www-authenticate': 'Basic realm="asyncfirst dashboard", charset="UTF-8"' },
        });
      }
      return credentials.user;
    };
  }
  return async (request) => {
    const principal = await authenticate(request);
    if (!(await isOperator(principal, request))) {
      throw new ProblemError('forbidden', `The dashboard is for operators (ADMIN_PRINCIPALS or the operators function); "${principal}" is not one.`);
    }
    return principal;
  };
}

/**
 * Refuses an action that did not come from the dashboard's own page: without the action header (a
 * form posted from another site cannot send it), or that the browser says came from another site.
 */
export function refuseCrossSite(request: FastifyRequest): void {
  if (request.headers[ACTION_HEADER] !== '1') {
    throw new ProblemError(
      'crossSiteRequestRefused',
      `Dashboard actions need the header ${ACTION_HEADER}: 1, which the dashboard's page sends and a form on another site cannot. Nothing was changed.`,
    );
  }
  const site = request.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') {
    throw new ProblemError('crossSiteRequestRefused', `The browser says this action came from a ${site} page, not the dashboard's own. Nothing was changed.`);
  }
}
