import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * The SSRF guard for callback URLs. By default only http(s) URLs whose host resolves to public
 * unicast addresses are called; WEBHOOK_ALLOWED_HOSTS (host names or CIDRs) opens exceptions.
 * The check runs twice: on the URL at submission (plainly refused URLs get a 400), and on the
 * address actually connected to at delivery (a custom DNS lookup), so a name that resolves to
 * a private address — or re-resolves to one later — is never called.
 */
export class CallbackPolicy {
  private readonly hosts = new Set<string>();
  private readonly ranges: [ipaddr.IPv4 | ipaddr.IPv6, number][] = [];

  constructor(allowed: string[] = []) {
    for (const entry of allowed.map((item) => item.trim().toLowerCase()).filter(Boolean)) {
      if (entry.includes('/')) this.ranges.push(ipaddr.parseCIDR(entry));
      else if (ipaddr.isValid(entry)) this.ranges.push([ipaddr.parse(entry), ipaddr.parse(entry).kind() === 'ipv4' ? 32 : 128]);
      else this.hosts.add(entry);
    }
  }

  /** Parses WEBHOOK_ALLOWED_HOSTS ("hooks.example.com,127.0.0.1/32"). */
  static fromList(list: string | undefined): CallbackPolicy {
    return new CallbackPolicy((list ?? '').split(','));
  }

  /** Why the URL is refused outright (scheme, credentials, a non-public literal address), or undefined. */
  refusal(url: string): string | undefined {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return 'is not an absolute URL';
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return `uses ${parsed.protocol.slice(0, -1)}; only http and https are called`;
    if (parsed.username || parsed.password) return 'carries credentials; put them in the path or a query parameter instead';
    const host = bareHost(parsed.hostname);
    if (this.hosts.has(host)) return undefined;
    if (host === 'localhost' || host.endsWith('.localhost')) return 'names localhost';
    if (isIP(host) && !this.addressAllowed(host)) return `points at ${host}, which is not a public address`;
    return undefined;
  }

  /** True when the connection may go to this resolved address for this host name. */
  addressAllowed(address: string, hostname?: string): boolean {
    if (hostname && this.hosts.has(bareHost(hostname).toLowerCase())) return true;
    if (!ipaddr.isValid(address)) return false;
    let parsed = ipaddr.parse(address);
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address();
    if (this.ranges.some(([range, bits]) => range.kind() === parsed.kind() && parsed.match(range, bits))) return true;
    return parsed.range() === 'unicast';
  }

  /** A DNS lookup for http.request that only yields addresses this policy allows. */
  readonly lookup = (hostname: string, options: object, callback: (error: Error | null, address: string | LookupAddress[], family?: number) => void): void => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, '');
      const allowed = addresses.filter((entry) => this.addressAllowed(entry.address, hostname));
      if (allowed.length === 0) {
        const refused = Object.assign(
          new Error(`callback host ${hostname} resolves only to non-public addresses (${addresses.map((entry) => entry.address).join(', ')})`),
          { code: 'ESSRFBLOCKED' },
        );
        return callback(refused, '');
      }
      if ((options as { all?: boolean }).all) return callback(null, allowed);
      const first = allowed[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };
}

/** The host without IPv6 brackets or the trailing dot of a fully qualified name (localhost. is localhost). */
function bareHost(hostname: string): string {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return host.endsWith('.') ? host.slice(0, -1) : host;
}
