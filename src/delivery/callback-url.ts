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

  /**
   * True when the connection may go to this resolved address for this host name. An IPv6 address
   * that carries an IPv4 address (see embeddedIPv4) is judged as that IPv4 address.
   */
  addressAllowed(address: string, hostname?: string): boolean {
    if (hostname && this.hosts.has(bareHost(hostname).toLowerCase())) return true;
    if (!ipaddr.isValid(address)) return false;
    const parsed = ipaddr.parse(address);
    if (this.inAllowedRange(parsed)) return true;
    if (parsed.kind() === 'ipv4') return parsed.range() === 'unicast';
    const ipv6 = parsed as ipaddr.IPv6;
    const embedded = embeddedIPv4(ipv6);
    if (embedded === 'unknown') return false;
    if (embedded) return embedded.every((inner) => this.inAllowedRange(inner) || inner.range() === 'unicast');
    // ipaddr.js calls everything it has no name for unicast; only 2000::/3 is allocated for global unicast.
    return ipv6.range() === 'unicast' && ipv6.match(GLOBAL_UNICAST_IPV6, 3);
  }

  /** Whether a WEBHOOK_ALLOWED_HOSTS address or CIDR covers this address. */
  private inAllowedRange(address: ipaddr.IPv4 | ipaddr.IPv6): boolean {
    return this.ranges.some(([range, bits]) => range.kind() === address.kind() && address.match(range, bits));
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

const GLOBAL_UNICAST_IPV6 = ipaddr.IPv6.parse('2000::');
const IPV4_COMPATIBLE = ipaddr.IPv6.parse('::');
const NAT64_WELL_KNOWN = ipaddr.IPv6.parse('64:ff9b::');

/**
 * The IPv4 addresses an IPv6 address stands for: the last 32 bits of an IPv4-compatible (::/96),
 * IPv4-mapped (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96) or NAT64 (64:ff9b::/96) address,
 * bits 16–47 of a 6to4 address (2002::/16), and a Teredo address's server and client (2001::/32).
 * 'unknown' for the local-use NAT64 prefix 64:ff9b:1::/48, where each network chooses where the
 * IPv4 address sits; undefined when the address carries none.
 */
function embeddedIPv4(address: ipaddr.IPv6): ipaddr.IPv4[] | 'unknown' | undefined {
  const [, second = 0, third = 0, fourth = 0, , , seventh = 0, eighth = 0] = address.parts;
  const ipv4 = (high: number, low: number) => new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
  switch (address.range()) {
    case 'ipv4Mapped':
    case 'rfc6145':
      return [ipv4(seventh, eighth)];
    case 'rfc6052':
      return address.match(NAT64_WELL_KNOWN, 96) ? [ipv4(seventh, eighth)] : 'unknown';
    case '6to4':
      return [ipv4(second, third)];
    case 'teredo':
      // The client's address is stored inverted (RFC 4380).
      return [ipv4(third, fourth), ipv4(seventh ^ 0xffff, eighth ^ 0xffff)];
    default:
      // Also :: and ::1, which are refused either way (0.0.0.0/8).
      return address.match(IPV4_COMPATIBLE, 96) ? [ipv4(seventh, eighth)] : undefined;
  }
}

/** The host without IPv6 brackets or the trailing dot of a fully qualified name (localhost. is localhost). */
function bareHost(hostname: string): string {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return host.endsWith('.') ? host.slice(0, -1) : host;
}
