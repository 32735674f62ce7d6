import type { FastifyRequest } from 'fastify';
import { ContractError } from '../contract/load.js';
import type { SecurityRequirement } from '../contract/operations.js';
import { ProblemError } from '../core/problems.js';

/** The principal of requests to operations that declare no security. */
export const ANONYMOUS_PRINCIPAL = 'anonymous';

/**
 * Maps a credential to the principal it belongs to, or rejects it (null, undefined or a throw).
 * The credential is the API key, the bearer token, or "user:password" for HTTP basic.
 */
export type SecurityHandler = (credential: string, request: FastifyRequest) => string | null | undefined | Promise<string | null | undefined>;

interface SecuritySchemeObject {
  type: string;
  in?: string;
  name?: string;
  scheme?: string;
}

type CredentialReader = (request: FastifyRequest) => string | undefined;

/** Resolves the principal of a request, or throws the 401 problem. */
export type Authenticate = (request: FastifyRequest) => Promise<string>;

/** Builds per-operation authenticators from the contract's securitySchemes and the application's handlers. */
export class SecurityEnforcer {
  private readonly readers = new Map<string, CredentialReader>();
  private readonly challenges: string[] = [];

  constructor(
    schemes: Record<string, SecuritySchemeObject>,
    private readonly handlers: Record<string, SecurityHandler>,
    usedSchemes: Set<string>,
  ) {
    for (const name of Object.keys(handlers)) {
      if (!(name in schemes)) throw new ContractError(`a security handler is registered for "${name}", which is not in components.securitySchemes`);
    }
    for (const name of usedSchemes) {
      const scheme = schemes[name];
      if (!scheme) throw new ContractError(`security requirement names "${name}", which is not in components.securitySchemes`);
      if (!handlers[name]) throw new ContractError(`security scheme "${name}" is used by the contract but no security handler is registered for it`);
      this.readers.set(name, credentialReader(name, scheme));
      if (scheme.type === 'http' && scheme.scheme?.toLowerCase() === 'basic') this.challenges.push('Basic realm="asyncfirst"');
      else if (scheme.type !== 'apiKey') this.challenges.push('Bearer realm="asyncfirst"');
    }
  }

  /** The authenticator for one set of alternatives (OR of ANDs), as the contract states them. */
  authenticator(requirements: SecurityRequirement[], anonymousAllowed: boolean): Authenticate {
    if (requirements.length === 0) return async () => ANONYMOUS_PRINCIPAL;
    const challenge = [...new Set(this.challenges)].join(', ');
    return async (request) => {
      for (const requirement of requirements) {
        const principal = await this.satisfy(requirement, request);
        if (principal !== undefined) return principal;
      }
      if (anonymousAllowed) return ANONYMOUS_PRINCIPAL;
      throw new ProblemError('unauthorized', `Send a credential accepted by ${requirements.map((names) => names.join(' + ')).join(' or ')}.`, {
        headers: challenge ? { 'www-authenticate': challenge } : {},
      });
    };
  }

  private async satisfy(requirement: SecurityRequirement, request: FastifyRequest): Promise<string | undefined> {
    let principal: string | undefined;
    for (const name of requirement) {
      const credential = this.readers.get(name)?.(request);
      if (credential === undefined || credential === '') return undefined;
      let accepted: string | null | undefined;
      try {
        accepted = await (this.handlers[name] as SecurityHandler)(credential, request);
      } catch {
        accepted = undefined;
      }
      if (typeof accepted !== 'string' || accepted === '') return undefined;
      principal ??= accepted;
    }
    return principal;
  }
}

function credentialReader(name: string, scheme: SecuritySchemeObject): CredentialReader {
  if (scheme.type === 'apiKey') {
    const key = scheme.name ?? '';
    if (scheme.in === 'header') return (request) => single(request.headers[key.toLowerCase()]);
    if (scheme.in === 'query') return (request) => single((request.query as Record<string, unknown>)[key]);
    if (scheme.in === 'cookie') return (request) => readCookie(request.headers.cookie, key);
  }
  if (scheme.type === 'http' && scheme.scheme?.toLowerCase() === 'basic') {
    return (request) => {
      const token = authorization(request, 'basic');
      return token === undefined ? undefined : Buffer.from(token, 'base64').toString('utf8');
    };
  }
  if ((scheme.type === 'http' && scheme.scheme?.toLowerCase() === 'bearer') || scheme.type === 'oauth2' || scheme.type === 'openIdConnect') {
    return (request) => authorization(request, 'bearer');
  }
  throw new ContractError(
    `security scheme "${name}" (type ${scheme.type}${scheme.scheme ? `, scheme ${scheme.scheme}` : ''}) is not supported; use apiKey, http bearer, http basic, oauth2 or openIdConnect`,
  );
}

function single(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function authorization(request: FastifyRequest, scheme: string): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const space = header.indexOf(' ');
  if (space < 0 || header.slice(0, space).toLowerCase() !== scheme) return undefined;
  return header.slice(space + 1).trim();
}

function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}
